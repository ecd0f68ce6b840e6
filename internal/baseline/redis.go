package baseline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fest-platform/fest/internal/festival"
)

// RedisConfig is a Redis baseline. Start from DefaultRedisConfig.
type RedisConfig struct {
	// Addr is host:port.
	Addr string
	// AppendFsync is the AOF policy to run with: always or everysec. The
	// store sets it (CONFIG SET) on Load, so one server serves both runs.
	AppendFsync string
	// Conns is the pool size: one connection per concurrent client.
	Conns int
	// Timeout bounds a call.
	Timeout time.Duration
}

// DefaultRedisConfig is appendfsync always with Clients connections.
func DefaultRedisConfig(addr string) RedisConfig {
	return RedisConfig{Addr: addr, AppendFsync: "always", Conns: Clients, Timeout: 10 * time.Second}
}

// Validate reports the first thing wrong with c.
func (c RedisConfig) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("no redis address")
	case c.AppendFsync != "always" && c.AppendFsync != "everysec":
		return fmt.Errorf("redis appendfsync %q: want always or everysec", c.AppendFsync)
	case c.Conns < 1 || c.Conns > 1000:
		return fmt.Errorf("redis conns %d out of range [1, 1000]", c.Conns)
	case c.Timeout <= 0:
		return errors.New("redis timeout must be positive")
	}
	return nil
}

// Redis is the flash-sale design: stock counters and a Lua script per order.
type Redis struct {
	cfg RedisConfig
	rdb *redis.Client
}

// Keys. Stock and price live in one hash per SKU; the order in a hash
// too (status, total, its lines for a cancel); paid GMV in two counters.
const (
	redisPrefix   = "fest:"
	redisOrderSeq = redisPrefix + "order:seq"
	redisGMV      = redisPrefix + "gmv"
	redisPaid     = redisPrefix + "paid"
	redisOrders   = redisPrefix + "orders" // a stream: the order log downstream services read
)

func skuKey(id string) string   { return redisPrefix + "sku:" + id }
func orderKey(id string) string { return redisPrefix + "order:" + id }

// placeScript checks every line's stock, and only if all suffice decrements
// them, numbers the order, records it and appends it to the orders stream.
// KEYS: the lines' SKU hashes. ARGV: quantities..., buyer, merchant,
// channel, region. Returns {id, total} or {0, failing line (1-based)}.
var placeScript = redis.NewScript(`
local n = #KEYS
for i = 1, n do
	local stock = tonumber(redis.call('HGET', KEYS[i], 'stock'))
	if stock == nil or stock < tonumber(ARGV[i]) then
		return {0, i}
	end
end
local total = 0
local lines = {}
for i = 1, n do
	local q = tonumber(ARGV[i])
	redis.call('HINCRBY', KEYS[i], 'stock', -q)
	total = total + q * tonumber(redis.call('HGET', KEYS[i], 'price'))
	lines[i] = KEYS[i] .. '=' .. q
end
local id = redis.call('INCR', '` + redisOrderSeq + `')
redis.call('HSET', '` + redisPrefix + `order:' .. id, 'status', 'pending_payment', 'total', total,
	'buyer', ARGV[n+1], 'merchant', ARGV[n+2], 'channel', ARGV[n+3], 'region', ARGV[n+4], 'lines', table.concat(lines, ','))
redis.call('XADD', '` + redisOrders + `', '*', 'order', id, 'total', total)
return {id, total}
`)

// payScript: KEYS[1] the order hash; ARGV[1] the amount.
// Returns 1 paid, 2 already paid, 0 missing, -1 mismatch, -2 invalid state.
var payScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
if st == 'paid' then return 2 end
if st ~= 'pending_payment' then return -2 end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if total ~= tonumber(ARGV[1]) then return -1 end
redis.call('HSET', KEYS[1], 'status', 'paid')
redis.call('INCRBY', '` + redisGMV + `', total)
redis.call('INCR', '` + redisPaid + `')
return 1
`)

// cancelScript: KEYS[1] the order hash. Gives each line's stock back.
// Returns 1 cancelled, 2 already cancelled, 0 missing, -2 invalid state.
var cancelScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
if st == 'cancelled' then return 2 end
if st ~= 'pending_payment' then return -2 end
local lines = redis.call('HGET', KEYS[1], 'lines')
for line in string.gmatch(lines, '[^,]+') do
	local k, q = string.match(line, '^(.*)=(%d+)$')
	redis.call('HINCRBY', k, 'stock', tonumber(q))
end
redis.call('HSET', KEYS[1], 'status', 'cancelled')
return 1
`)

// OpenRedis connects and sets the AOF policy.
func OpenRedis(ctx context.Context, cfg RedisConfig) (*Redis, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redis config: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{
		Addr:         cfg.Addr,
		PoolSize:     cfg.Conns,
		MinIdleConns: cfg.Conns,
		ReadTimeout:  cfg.Timeout,
		WriteTimeout: cfg.Timeout,
		DialTimeout:  cfg.Timeout,
	})
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("connect redis %s: %w", cfg.Addr, err)
	}
	return &Redis{cfg: cfg, rdb: rdb}, nil
}

// Name is "redis" (appendfsync always) or "redis-everysec".
func (r *Redis) Name() string {
	if r.cfg.AppendFsync == "everysec" {
		return "redis-everysec"
	}
	return "redis"
}

// Close closes the pool.
func (r *Redis) Close() error { return r.rdb.Close() }

// redisLoadPipeline is the SKUs written per pipelined round trip.
const redisLoadPipeline = 5000

// Load empties the database, sets appendonly and the AOF policy, loads the
// SKUs and the scripts.
func (r *Redis) Load(ctx context.Context, m *festival.Model) error {
	if err := r.rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush redis: %w", err)
	}
	if err := r.rdb.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
		return fmt.Errorf("set redis appendonly: %w", err)
	}
	if err := r.rdb.ConfigSet(ctx, "appendfsync", r.cfg.AppendFsync).Err(); err != nil {
		return fmt.Errorf("set redis appendfsync: %w", err)
	}
	for start := 0; start < len(m.SKUs); start += redisLoadPipeline {
		pipe := r.rdb.Pipeline()
		for i := start; i < min(len(m.SKUs), start+redisLoadPipeline); i++ {
			s := &m.SKUs[i]
			pipe.HSet(ctx, skuKey(s.ID), "stock", s.Stock, "price", s.Price)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("load skus into redis: %w", err)
		}
	}
	for _, s := range []*redis.Script{placeScript, payScript, cancelScript} {
		if err := s.Load(ctx, r.rdb).Err(); err != nil {
			return fmt.Errorf("load redis script: %w", err)
		}
	}
	return nil
}

// Place runs the place script once (EVALSHA).
func (r *Redis) Place(ctx context.Context, m *festival.Model, o *festival.Order) (string, int64, error) {
	lines := o.Lines()
	keys := make([]string, len(lines))
	args := make([]any, 0, len(lines)+4)
	for i, it := range lines {
		keys[i] = skuKey(m.SKUs[it.SKU].ID)
		args = append(args, it.Qty)
	}
	args = append(args, festival.BuyerID(o.Buyer), m.Merchants[o.Merchant].ID, m.ChannelName(o), m.BuyerRegion(o.Buyer))
	res, err := placeScript.EvalSha(ctx, r.rdb, keys, args...).Int64Slice()
	if err != nil {
		return "", 0, fmt.Errorf("place order: %w", err)
	}
	if len(res) != 2 {
		return "", 0, fmt.Errorf("place order: script answered %v", res)
	}
	if res[0] == 0 {
		return "", 0, ErrOutOfStock
	}
	return strconv.FormatInt(res[0], 10), res[1], nil
}

// Pay runs the pay script.
func (r *Redis) Pay(ctx context.Context, id string, amount int64) error {
	n, err := payScript.EvalSha(ctx, r.rdb, []string{orderKey(id)}, amount).Int64()
	if err != nil {
		return fmt.Errorf("pay order: %w", err)
	}
	return scriptAnswer(n)
}

// Cancel runs the cancel script.
func (r *Redis) Cancel(ctx context.Context, id string) error {
	n, err := cancelScript.EvalSha(ctx, r.rdb, []string{orderKey(id)}).Int64()
	if err != nil {
		return fmt.Errorf("cancel order: %w", err)
	}
	return scriptAnswer(n)
}

func scriptAnswer(n int64) error {
	switch n {
	case 1, 2:
		return nil
	case 0:
		return ErrNotFound
	case -1:
		return ErrPaymentMismatch
	}
	return ErrInvalidState
}

// Stock reads every SKU's stock, pipelined.
func (r *Redis) Stock(ctx context.Context, m *festival.Model) ([]int64, error) {
	out := make([]int64, len(m.SKUs))
	for start := 0; start < len(m.SKUs); start += redisLoadPipeline {
		end := min(len(m.SKUs), start+redisLoadPipeline)
		pipe := r.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, 0, end-start)
		for i := start; i < end; i++ {
			cmds = append(cmds, pipe.HGet(ctx, skuKey(m.SKUs[i].ID), "stock"))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read stock: %w", err)
		}
		for j, c := range cmds {
			v, err := c.Int64()
			if err != nil {
				v = -1 // missing: the audit reports it
			}
			out[start+j] = v
		}
	}
	return out, nil
}

// Paid reads the paid counters.
func (r *Redis) Paid(ctx context.Context) (int64, int64, error) {
	vals, err := r.rdb.MGet(ctx, redisGMV, redisPaid).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("read paid counters: %w", err)
	}
	var out [2]int64
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i], err = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("parse paid counter: %w", err)
			}
		}
	}
	return out[0], out[1], nil
}
