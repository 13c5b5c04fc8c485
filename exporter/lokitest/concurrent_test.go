package lokitest

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
)

// TestConcurrentSafe runs many pushers (protobuf and JSON) against scripted
// faults and concurrent readers, then checks that every entry was stored
// exactly once and in order within its stream.
func TestConcurrentSafe(t *testing.T) {
	s := NewTestServer(t)
	const pushers, pushesEach, perPush = 16, 25, 8
	base := time.Now().Add(-time.Minute)
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // faults
		defer bg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			switch i % 4 {
			case 0:
				s.FailNext(1, 503, RetryAfter("1"))
			case 1:
				s.FailNext(1, 429)
			case 2:
				s.SetDelay(time.Millisecond)
			case 3:
				s.SetDelay(0)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	go func() { // readers
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = s.Entries()
			_ = s.Streams()
			_ = s.Requests()
			_ = s.Pushes()
			_ = s.PendingFaults()
			time.Sleep(time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client(t)
			labels := fmt.Sprintf(`{pusher="%d"}`, p)
			for i := range pushesEach {
				st := push.Stream{Labels: labels}
				for j := range perPush {
					n := i*perPush + j
					st.Entries = append(st.Entries, push.Entry{Timestamp: base.Add(time.Duration(n) * time.Microsecond), Line: fmt.Sprint(n)})
				}
				req := &push.PushRequest{Streams: []push.Stream{st}}
				for attempt := 0; ; attempt++ {
					var a answer
					if (p+i)%2 == 0 {
						a = pushProto(t, c, s.URL(), req, map[string]string{"X-Scope-OrgID": "t"})
					} else {
						a = post(t, c, s.URL(), jsonBody(t, req), map[string]string{"Content-Type": "application/json", "X-Scope-OrgID": "t"})
					}
					if a.err == nil && a.status == http.StatusNoContent {
						break
					}
					if a.err != nil || (a.status != 503 && a.status != 429) || attempt > 1000 {
						t.Errorf("pusher %d push %d: %d %q %v", p, i, a.status, a.body, a.err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	streams := s.Streams()
	if len(streams) != pushers {
		t.Fatalf("%d streams, want %d", len(streams), pushers)
	}
	for _, st := range streams {
		if len(st.Entries) != pushesEach*perPush {
			t.Fatalf("stream %s: %d entries, want %d", st.LabelString, len(st.Entries), pushesEach*perPush)
		}
		for n, e := range st.Entries {
			if e.Line != fmt.Sprint(n) || e.Tenant != "t" {
				t.Fatalf("stream %s entry %d: %q", st.LabelString, n, e.Line)
			}
		}
	}
	if got := len(s.Entries()); got != pushers*pushesEach*perPush {
		t.Fatalf("%d entries", got)
	}
	if s.Pushes() != len(s.Requests()) {
		t.Fatalf("%d pushes, %d requests recorded", s.Pushes(), len(s.Requests()))
	}
}
