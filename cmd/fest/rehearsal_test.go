package main

import (
	"io"
	"testing"
	"time"
)

// TestRehearsalPaymentTimeout: on the rehearsal clock the payment timeout,
// festival time, defaults to longer than the festival; a given one is kept.
func TestRehearsalPaymentTimeout(t *testing.T) {
	t.Setenv("FEST_PAYMENT_TIMEOUT", "")
	t.Setenv("FEST_REHEARSAL_CLOCK", "")
	for _, c := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 15 * time.Minute},
		{[]string{"--rehearsal-clock"}, rehearsalPaymentTimeout},
		{[]string{"--rehearsal-clock", "--payment-timeout", "1h"}, time.Hour},
		{[]string{"--payment-timeout", "1h"}, time.Hour},
	} {
		o, _, err := parseServeFlags("serve", c.args, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if o.PaymentTimeout != c.want {
			t.Errorf("%q: payment timeout %v, want %v", c.args, o.PaymentTimeout, c.want)
		}
	}
}
