package lokitest_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lokislog/lokislog/exporter/lokitest"
)

// pushJSON sends one line to Loki's push endpoint the way any client would;
// in a real test this is the code under test (for example a lokislog
// handler pointed at s.URL()).
func pushJSON(url, tenant, line string) (int, error) {
	ts := strconv.FormatInt(time.Now().UnixNano(), 10)
	body := `{"streams":[{"stream":{"service_name":"checkout","env":"test"},` +
		`"values":[["` + ts + `",` + strconv.Quote(line) + `,{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}]]}]}`
	req, err := http.NewRequest(http.MethodPost, url+lokitest.PushPath, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Scope-OrgID", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// A unit test starts a fake Loki, points the code under test at it, and
// waits for the entries it expects. In a test, use
// lokitest.NewTestServer(t), which closes the server when the test ends.
func Example() {
	s := lokitest.NewServer()
	defer s.Close()

	if _, err := pushJSON(s.URL(), "team-a", `level=INFO msg="order placed"`); err != nil {
		fmt.Println(err)
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	entries, err := s.WaitEntries(ctx, 1)
	if err != nil {
		fmt.Println(err) // says how many of the expected entries arrived
		return
	}
	e := entries[0]
	fmt.Println(e.Tenant, e.LabelString)
	fmt.Println(e.Line)
	fmt.Println(e.Metadata["trace_id"])
	// Output:
	// team-a {env="test", service_name="checkout"}
	// level=INFO msg="order placed"
	// 4bf92f3577b34da6a3ce929d0e0e4736
}

// Scripted faults test how a client copes with an unhealthy Loki: here two
// rate-limit answers with Retry-After, then a normal one.
func ExampleServer_FailNext() {
	s := lokitest.NewServer()
	defer s.Close()
	s.FailNext(2, http.StatusTooManyRequests, lokitest.RetryAfter("1"))

	for range 3 {
		status, err := pushJSON(s.URL(), "team-a", "hello")
		fmt.Println(status, err)
	}
	fmt.Println(len(s.Entries()), "entry stored")
	// Output:
	// 429 <nil>
	// 429 <nil>
	// 204 <nil>
	// 1 entry stored
}

// Loki's rules apply: a line over the maximum line size is refused with 400,
// while the rest of the push is stored.
func ExampleLimits() {
	s := lokitest.NewServer(lokitest.WithLimits(lokitest.Limits{MaxLineSize: 10}))
	defer s.Close()

	status, _ := pushJSON(s.URL(), "", "this line is too long")
	fmt.Println(status)
	r := s.Requests()[0]
	fmt.Println(r.Accepted, r.Rejected, strings.HasPrefix(r.Rejections[0].Reason, "Max entry size"))
	// Output:
	// 400
	// 0 1 true
}
