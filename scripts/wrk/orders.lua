-- orders.lua: wrk script for single JSON POST /v1/orders. It imports nothing; each request picks a
-- SKU from the catalog run.sh imports (sku-1..sku-N of merchant m-1) and a buyer from a pool, so the
-- engine sees spread partitions and buyers as in a sale. done() counts the non-2xx answers, because
-- wrk's own summary only reports them as a total that is easy to miss.
--
-- Environment: FEST_TOKEN (storefront token), WRK_SKUS (catalog size), WRK_BUYERS (buyer pool).

local token = os.getenv("FEST_TOKEN") or ""
local skus = tonumber(os.getenv("WRK_SKUS") or "1000")
local buyers = tonumber(os.getenv("WRK_BUYERS") or "100000")
local counter = 0
local threads = {}

function setup(thread)
	thread:set("id", #threads)
	table.insert(threads, thread)
end

function init(args)
	math.randomseed(os.time() + id * 7919)
	non2xx = 0
	answered = 0
	wrk.headers["Authorization"] = "Bearer " .. token
	wrk.headers["Content-Type"] = "application/json"
end

function request()
	counter = counter + 1
	local sku = math.random(1, skus)
	local buyer = math.random(1, buyers)
	local body = '{"buyer_id":"b-' .. buyer .. '","items":[{"sku_id":"sku-' .. sku ..
		'","quantity":1}],"channel":"app"}'
	return wrk.format("POST", "/v1/orders", nil, body)
end

function response(status, headers, body)
	answered = answered + 1
	if status < 200 or status > 299 then
		non2xx = non2xx + 1
		if non2xx <= 3 then
			print("non-2xx " .. status .. ": " .. body)
		end
	end
end

function done(summary, latency, requests)
	local bad, total = 0, 0
	for _, t in ipairs(threads) do
		bad = bad + t:get("non2xx")
		total = total + t:get("answered")
	end
	io.write(string.format("answered %d non2xx %d\n", total, bad))
	io.write(string.format("rps %.0f p50_us %d p99_us %d\n",
		summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99)))
end
