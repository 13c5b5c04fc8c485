package exporter

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// These tests run in a synctest bubble over an in-memory network, so waits
// of seconds take no real time and are exact.

// pipeClient returns a client whose requests reach f over a pipeNet.
func pipeClient(t *testing.T, f *fakeLoki, cfg Config) (*Client, *pipeNet) {
	hc, pn := f.servePipe(t)
	cfg.URL = "http://loki.test:3100"
	cfg.HTTPClient = hc
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(context.Background()) })
	return c, pn
}

// gaps returns the times between consecutive requests.
func gaps(reqs []*pushed) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(reqs); i++ {
		out = append(out, reqs[i].At.Sub(reqs[i-1].At))
	}
	return out
}

func TestRetryAfterWait(t *testing.T) {
	// The bubble's clock starts at 2000-01-01 00:00:00 UTC.
	start := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return start.Add(d).Format(http.TimeFormat) }
	tests := map[string]struct {
		status     int
		retryAfter string
		maxAfter   time.Duration
		want       time.Duration // exact gap; 0 means a plain backoff (at most 0.75s)
	}{
		"429 seconds":          {status: 429, retryAfter: "10", want: 10 * time.Second},
		"503 seconds":          {status: 503, retryAfter: "3", want: 3 * time.Second},
		"429 date":             {status: 429, retryAfter: date(20 * time.Second), want: 20 * time.Second},
		"503 date":             {status: 503, retryAfter: date(45 * time.Second), want: 45 * time.Second},
		"capped":               {status: 429, retryAfter: "600", want: time.Minute},
		"capped by config":     {status: 503, retryAfter: "600", maxAfter: 5 * time.Second, want: 5 * time.Second},
		"past date":            {status: 429, retryAfter: date(-time.Hour)},
		"ignored on 500":       {status: 500, retryAfter: "30"},
		"ignored on 502":       {status: 502, retryAfter: "30"},
		"invalid":              {status: 429, retryAfter: "later"},
		"smaller than backoff": {status: 503, retryAfter: "0"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t, replies(reply{status: tt.status, header: map[string]string{"Retry-After": tt.retryAfter}}))
				c, _ := pipeClient(t, f, Config{MaxRetryAfter: tt.maxAfter, MaxRetryTime: 5 * time.Minute})
				if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
					t.Fatal(err)
				}
				g := gaps(f.requests())
				if len(g) != 1 {
					t.Fatalf("%d requests, want 2", len(g)+1)
				}
				switch {
				case tt.want > 0 && g[0] != tt.want:
					t.Errorf("waited %v, want %v", g[0], tt.want)
				case tt.want == 0 && (g[0] < DefaultMinBackoff/2 || g[0] > DefaultMinBackoff*3/2):
					t.Errorf("waited %v, want a jittered %v", g[0], DefaultMinBackoff)
				}
			})
		})
	}
}

func TestBackoffGrowth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t, always(reply{status: 500}))
		c, _ := pipeClient(t, f, Config{MinBackoff: time.Second, MaxBackoff: 4 * time.Second, MaxRetryTime: time.Minute})
		start := time.Now()
		err := c.Export(context.Background(), testBatch(2, 2))
		var se *StatusError
		if classify(err) != retryable || !errors.As(err, &se) || se.Status != 500 {
			t.Fatalf("Export = %v, want a retryable error wrapping status 500", err)
		}
		if elapsed := time.Since(start); elapsed > time.Minute {
			t.Errorf("Export took %v, more than MaxRetryTime", elapsed)
		}
		g := gaps(f.requests())
		if len(g) < 10 {
			t.Fatalf("only %d retries in a minute with backoffs of at most 4s", len(g))
		}
		for i, d := range g {
			base := min(time.Second<<i, 4*time.Second)
			lo, hi := base/2, min(base*3/2, 4*time.Second)
			if d < lo || d > hi {
				t.Errorf("wait %d = %v, want within [%v, %v]", i, d, lo, hi)
			}
		}
		if st := c.Stats(); int(st.Requests) != len(g)+1 || int(st.Retries) != len(g) {
			t.Errorf("Stats = %+v for %d requests", st, len(g)+1)
		}
	})
}

func TestGiveUp(t *testing.T) {
	ra7 := always(reply{status: 503, header: map[string]string{"Retry-After": "7"}, body: "slow down"})
	tests := map[string]struct {
		ctxTimeout time.Duration
		requests   int
		elapsed    time.Duration
		why        string
	}{
		// Requests at 0, 7, ..., 56 s; the next would start after 63 s.
		"max retry time": {requests: 9, elapsed: 56 * time.Second, why: "max retry time 1m0s"},
		// Requests at 0, 7, 14 s; the next would start after the deadline.
		"context deadline": {ctxTimeout: 20 * time.Second, requests: 3, elapsed: 14 * time.Second, why: "context deadline"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t, ra7)
				c, _ := pipeClient(t, f, Config{MaxRetryTime: time.Minute, MaxBackoff: 5 * time.Second}) // backoffs below 7s
				ctx := context.Background()
				if tt.ctxTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.ctxTimeout)
					defer cancel()
				}
				start := time.Now()
				err := c.Export(ctx, testBatch(2, 2))
				if elapsed := time.Since(start); elapsed != tt.elapsed {
					t.Errorf("gave up after %v, want %v", elapsed, tt.elapsed)
				}
				var se *StatusError
				if classify(err) != retryable || !errors.As(err, &se) || se.Status != 503 || se.RetryAfter != 7*time.Second {
					t.Fatalf("Export = %v, want a retryable error wrapping the 503", err)
				}
				if errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v claims the context ended", err)
				}
				for _, s := range []string{"status 503: slow down", tt.why} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if n := len(f.requests()); n != tt.requests {
					t.Errorf("%d requests, want %d", n, tt.requests)
				}
				if st := c.Stats(); int(st.Requests) != tt.requests || int(st.Retries) != tt.requests-1 || st.LastStatus != 503 {
					t.Errorf("Stats = %+v", st)
				}
			})
		})
	}
}

func TestTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t, replies(reply{hang: true}))
		var observed []int
		c, _ := pipeClient(t, f, Config{OnRequest: func(status int, d time.Duration) { observed = append(observed, status) }})
		start := time.Now()
		if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
			t.Fatal(err)
		}
		reqs := f.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests", len(reqs))
		}
		if g := reqs[1].At.Sub(start); g < DefaultTimeout || g > DefaultTimeout+DefaultMinBackoff*3/2 {
			t.Errorf("retried %v after the start, want the timeout %v plus a backoff", g, DefaultTimeout)
		}
		if len(observed) != 2 || observed[0] != 0 || observed[1] != 204 {
			t.Errorf("OnRequest saw %v, want [0 204]", observed)
		}
	})
}

func TestDialErrorsSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t, nil)
		c, pn := pipeClient(t, f, Config{})
		pn.refuse = 2
		if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
			t.Fatal(err)
		}
		if st := c.Stats(); st.Requests != 3 || st.Retries != 2 || st.EntriesSent != 2 || st.LastStatus != 204 {
			t.Errorf("Stats = %+v, want 3 requests, 2 retries", st)
		}
		if n := len(f.requests()); n != 1 || pn.dials != 3 {
			t.Errorf("fake saw %d requests after %d dials, want 1 after 3", n, pn.dials)
		}
	})
}

func TestShutdownDuringWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t, always(reply{status: 503, header: map[string]string{"Retry-After": "30"}}))
		c, _ := pipeClient(t, f, Config{})
		start := time.Now()
		done := make(chan error)
		go func() { done <- c.Export(context.Background(), testBatch(2, 2)) }()
		time.Sleep(5 * time.Second)
		if err := c.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		err := <-done
		if !errors.Is(err, ErrShutdown) || classify(err) != retryable {
			t.Errorf("Export = %v, want a retryable error wrapping ErrShutdown", err)
		}
		if elapsed := time.Since(start); elapsed != 5*time.Second {
			t.Errorf("Export returned after %v, want 5s (at Shutdown)", elapsed)
		}
		if n := len(f.requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
}

func TestShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t, nil)
		c, _ := pipeClient(t, f, Config{})
		// An Export that cannot end: its caller holds it. Simulate one by
		// registering a running call directly.
		if !c.begin() {
			t.Fatal("begin failed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := c.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
		}
		c.end()
		if err := c.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown after the call ended: %v", err)
		}
	})
}
