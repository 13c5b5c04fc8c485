package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/spool"
)

// DefaultMaxAge is replay's default -max-age: Loki's default
// reject_old_samples_max_age.
const DefaultMaxAge = 168 * time.Hour

type replayOpts struct {
	url, tenant, protocol           string
	username, password, bearer      string
	caFile                          string
	insecure                        bool
	headers                         map[string]string
	timeout, minBackoff, maxBackoff time.Duration
	maxRetryTime                    time.Duration
	maxAge, progress                time.Duration
	dryRun, quiet                   bool
}

func (a *app) replayFlags() (*flag.FlagSet, *replayOpts) {
	o := &replayOpts{headers: map[string]string{}}
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(&o.url, "url", "", "Loki's base URL, such as http://loki:3100 (the push path is added); required")
	fs.StringVar(&o.tenant, "tenant", "", "X-Scope-OrgID for records written without a tenant (a record's own tenant wins)")
	fs.StringVar(&o.protocol, "protocol", exporter.ProtocolProtobuf, "push protocol: protobuf (snappy) or json (gzip)")
	fs.StringVar(&o.username, "username", "", "basic auth user name")
	fs.StringVar(&o.password, "password", "", "basic auth password (default: $LOKI_PASSWORD)")
	fs.StringVar(&o.bearer, "bearer-token", "", "bearer token (default: $LOKI_BEARER_TOKEN)")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM file of the CA certificates that verify Loki (default: the system's)")
	fs.BoolVar(&o.insecure, "insecure-skip-verify", false, "do not verify Loki's TLS certificate (tests only)")
	fs.Func("header", "`name=value` header added to every push (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want name=value, got %q", s)
		}
		o.headers[k] = v
		return nil
	})
	fs.DurationVar(&o.timeout, "timeout", exporter.DefaultTimeout, "bound of one HTTP request")
	fs.DurationVar(&o.minBackoff, "min-backoff", exporter.DefaultMinBackoff, "first wait before a retry")
	fs.DurationVar(&o.maxBackoff, "max-backoff", exporter.DefaultMaxBackoff, "longest wait between retries")
	fs.DurationVar(&o.maxRetryTime, "max-retry-time", exporter.DefaultMaxRetryTime,
		"how long one push is retried before the replay stops with it undelivered")
	fs.DurationVar(&o.maxAge, "max-age", DefaultMaxAge, "drop (and count) entries older than this; 0 keeps all")
	fs.BoolVar(&o.dryRun, "dry-run", false, "read the spool without its lock and say what would be sent; send and change nothing")
	fs.DurationVar(&o.progress, "progress", 2*time.Second, "interval of progress lines on stderr; 0 prints one per push")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	setUsage(fs, `Usage: lokispool replay -url URL [flags] DIR

Sends every unacknowledged record of the spool in DIR to Loki, oldest
first, acknowledging each once Loki took it or rejected it for good, so an
interrupted replay resumes without duplicates. Takes the spool's lock: stop
the service that owns it first. SIGINT/SIGTERM stops after the push in
flight; a second one abandons it.
`)
	return fs, o
}

func (a *app) replay(args []string) int {
	fs, o := a.replayFlags()
	pos, help, err := parse(fs, args)
	switch {
	case help:
		fs.SetOutput(a.stdout)
		fs.Usage()
		return exitOK
	case err != nil:
		return exitUsage
	case len(pos) != 1:
		return a.usageError(fs, "want one spool directory, got %d arguments", len(pos))
	case o.url == "":
		return a.usageError(fs, "-url is required")
	case o.maxAge < 0:
		return a.usageError(fs, "-max-age %v is negative", o.maxAge)
	case o.progress < 0:
		return a.usageError(fs, "-progress %v is negative", o.progress)
	}
	dir := pos[0]
	if o.password == "" {
		o.password = a.getenv("LOKI_PASSWORD")
	}
	if o.bearer == "" {
		o.bearer = a.getenv("LOKI_BEARER_TOKEN")
	}
	client, err := exporter.NewClient(exporter.Config{
		URL:          o.url,
		TenantID:     o.tenant,
		Protocol:     o.protocol,
		Username:     o.username,
		Password:     o.password,
		BearerToken:  o.bearer,
		Headers:      o.headers,
		TLS:          exporter.TLSConfig{CAFile: o.caFile, InsecureSkipVerify: o.insecure},
		Timeout:      o.timeout,
		MinBackoff:   o.minBackoff,
		MaxBackoff:   o.maxBackoff,
		MaxRetryTime: o.maxRetryTime,
	})
	if err != nil {
		fmt.Fprintf(a.stderr, "lokispool replay: %v\n", err)
		return exitUsage
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		client.Shutdown(ctx)
	}()
	if msg := checkDir(dir); msg != "" {
		fmt.Fprintf(a.stderr, "lokispool replay: %s\n", msg)
		return exitFail
	}
	target := redactURL(o.url)
	if o.dryRun {
		return a.dryRun(dir, target, o)
	}

	errw := &syncWriter{w: a.stderr}
	var (
		hmu     sync.Mutex
		handled []error
	)
	sp, err := spool.Open(spool.Options{
		Dir:  dir,
		Sync: spool.SyncBatch, // no goroutine; every cursor write is flushed
		ErrorHandler: func(err error) {
			hmu.Lock()
			handled = append(handled, err)
			hmu.Unlock()
			fmt.Fprintf(errw, "lokispool replay: %v\n", err)
		},
	})
	if errors.Is(err, spool.ErrLocked) {
		fmt.Fprintf(a.stderr, "lokispool replay: %s is locked by another process: is the service that "+
			"owns it still running? Stop it first (inspect works without the lock)\n", dir)
		return exitFail
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "lokispool replay: %v\n", err)
		return exitFail
	}

	r := &replayer{app: a, o: o, sp: sp, client: client, errw: errw, dir: dir, reasons: map[string]int{}}
	code := r.run(target)
	if err := sp.Close(); err != nil {
		fmt.Fprintf(a.stderr, "lokispool replay: close spool: %v\n", err)
		code = cmp.Or(code, exitFail)
	}
	return code
}

// replayer is one replay of an open spool.
type replayer struct {
	*app
	o      *replayOpts
	sp     *spool.Spool
	client *exporter.Client
	errw   io.Writer // stderr, shared with the signal goroutine
	dir    string

	records     int64          // records read
	pushes      int64          // pushes made
	sent        int64          // entries Loki took
	rejected    int64          // entries Loki refused for good
	reasons     map[string]int // rejected entries by reason
	tooOld      int64          // entries dropped by max-age
	corrupt     int64          // entries of undecodable records
	undecodable int64          // undecodable records
	ackErrs     int
}

func (r *replayer) run(target string) int {
	st0 := r.sp.Stats()
	if st0.CorruptSegments > 0 {
		fmt.Fprintf(r.errw, "lokispool replay: recovery set %d corrupt segments aside as *.corrupt (%d bytes of them unreadable); their valid records are replayed\n",
			st0.CorruptSegments, st0.CorruptBytes)
	}
	if st0.TruncatedBytes > 0 {
		fmt.Fprintf(r.errw, "lokispool replay: recovery cut %d bytes of a torn tail (the last writes before a crash)\n", st0.TruncatedBytes)
	}
	if st0.CursorResets > 0 {
		fmt.Fprintf(r.errw, "lokispool replay: the cursor was unusable: records acknowledged earlier in its segment are sent again\n")
	}
	oldest := ""
	if st0.OldestTimestamp != 0 {
		oldest = ", oldest from " + fmtTime(st0.OldestTimestamp)
	}
	fmt.Fprintf(r.errw, "lokispool replay: %s: %d records (%d entries) pending%s; sending to %s\n",
		r.dir, st0.Records, st0.Entries, oldest, target)

	// Signals: the first stops the loop after the push in flight, the
	// second abandons that push. The goroutine is owned by run: it ends
	// when done is closed, and run waits for it.
	var stopping atomic.Bool
	exportCtx, abort := context.WithCancel(context.Background())
	defer abort()
	sigc := make(chan os.Signal, 2)
	r.notify(sigc)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n := 0
		for {
			select {
			case <-done:
				return
			case sig := <-sigc:
				n++
				if n == 1 {
					stopping.Store(true)
					fmt.Fprintf(r.errw, "lokispool replay: %v: stopping after the push in flight (again to abandon it)\n", sig)
					continue
				}
				fmt.Fprintf(r.errw, "lokispool replay: %v: abandoning the push in flight; it stays in the spool\n", sig)
				abort()
			}
		}
	}()
	defer func() {
		r.stop(sigc)
		close(done)
		wg.Wait()
	}()

	var failure error
	lastProgress := r.now()
	for !stopping.Load() {
		rec, err := r.sp.Next()
		if errors.Is(err, spool.ErrEmpty) {
			break
		}
		if err != nil {
			failure = err
			break
		}
		r.records++
		b, err := spool.DecodeBatch(rec.Payload)
		if err != nil {
			r.undecodable++
			r.corrupt += int64(rec.Entries)
			fmt.Fprintf(r.errw, "lokispool replay: record at segment %d offset %d: %v: its %d entries are counted as corrupt\n",
				rec.Pos.Segment, rec.Pos.Offset, err, rec.Entries)
			r.ack(rec.Pos)
			continue
		}
		if r.o.maxAge > 0 {
			r.tooOld += int64(dropOlder(b, r.now().Add(-r.o.maxAge).UnixNano()))
		}
		n := b.Len()
		if n == 0 {
			r.ack(rec.Pos)
			continue
		}
		r.pushes++
		err = r.client.Export(exportCtx, b)
		if r.afterExport != nil {
			r.afterExport()
		}
		var (
			partial *exporter.PartialError
			perm    *exporter.PermanentError
		)
		switch {
		case err == nil:
			r.sent += int64(n)
			r.ack(rec.Pos)
		case errors.As(err, &partial):
			rej := 0
			if partial.Rejected != nil {
				rej = partial.Rejected.Entries
				r.reject(partial.Rejected)
			}
			delivered := n - partial.Remaining.Len() - rej
			r.sent += int64(delivered)
			failure = fmt.Errorf("%w (%d of the record's entries were delivered and will be sent again by the next replay)", err, delivered)
		case errors.As(err, &perm):
			r.reject(perm)
			r.sent += int64(n - perm.Entries)
			r.ack(rec.Pos)
		default:
			failure = err
		}
		if failure != nil {
			break
		}
		if !r.o.quiet && (r.o.progress == 0 || r.now().Sub(lastProgress) >= r.o.progress) {
			lastProgress = r.now()
			fmt.Fprintf(r.errw, "lokispool replay: %d of %d records, %d entries sent, %d rejected, %d too old\n",
				r.records, st0.Records, r.sent, r.rejected, r.tooOld)
		}
	}
	interrupted := stopping.Load() || exportCtx.Err() != nil
	if failure != nil && exportCtx.Err() != nil {
		failure = nil // abandoned on the second signal
	}

	st := r.sp.Stats()
	r.summary(st)
	switch {
	case failure != nil:
		fmt.Fprintf(r.stdout, "stopped: %v\n%d records (%d entries) left in the spool: run replay again when Loki takes them\n",
			failure, st.Records, st.Entries)
		return exitFail
	case interrupted && st.Records > 0:
		fmt.Fprintf(r.stdout, "interrupted: %d records (%d entries) left in the spool: run replay again to resume\n", st.Records, st.Entries)
		return exitInterrupted
	case r.ackErrs > 0:
		fmt.Fprintf(r.stdout, "done, but %d acknowledgements were not saved: a later replay may send those records again\n", r.ackErrs)
		return exitFail
	case st.Records > 0:
		fmt.Fprintf(r.stdout, "stopped: %d records (%d entries) left in the spool\n", st.Records, st.Entries)
		return exitFail
	}
	fmt.Fprintf(r.stdout, "done: every record was acknowledged\n")
	return exitOK
}

func (r *replayer) ack(pos spool.Pos) {
	if err := r.sp.Ack(pos); err != nil {
		r.ackErrs++
		fmt.Fprintf(r.errw, "lokispool replay: %v\n", err)
	}
}

func (r *replayer) reject(p *exporter.PermanentError) {
	r.rejected += int64(p.Entries)
	var key string
	if p.Status == 0 {
		key = "not sent: " + oneLine(p.Reason)
	} else {
		key = fmt.Sprintf("status %d: %s", p.Status, oneLine(p.Reason))
	}
	r.reasons[key] += p.Entries
}

// reasons400 reports whether some push was answered 400.
func (r *replayer) reasons400() bool {
	for k := range r.reasons {
		if strings.HasPrefix(k, "status 400:") {
			return true
		}
	}
	return false
}

func (r *replayer) summary(st spool.Stats) {
	w := r.stdout
	fmt.Fprintf(w, "replay of %s:\n", r.dir)
	fmt.Fprintf(w, "  records:  %d read, %d pushes, %d records (%d entries) left in the spool\n",
		r.records, r.pushes, st.Records, st.Entries)
	fmt.Fprintf(w, "  sent:     %d entries\n", r.sent)
	fmt.Fprintf(w, "  rejected: %d entries\n", r.rejected)
	type reason struct {
		text string
		n    int
	}
	var rs []reason
	for k, n := range r.reasons {
		rs = append(rs, reason{k, n})
	}
	slices.SortFunc(rs, func(x, y reason) int { return cmp.Or(cmp.Compare(y.n, x.n), strings.Compare(x.text, y.text)) })
	for _, x := range rs {
		fmt.Fprintf(w, "    %d  %s\n", x.n, x.text)
	}
	if r.reasons400() {
		fmt.Fprintf(w, "    (a 400 may be a partial success: Loki stores the valid entries of the push)\n")
	}
	if r.o.maxAge > 0 {
		fmt.Fprintf(w, "  too old:  %d entries (older than %v, dropped)\n", r.tooOld, r.o.maxAge)
	} else {
		fmt.Fprintf(w, "  too old:  %d entries (no -max-age)\n", r.tooOld)
	}
	fmt.Fprintf(w, "  corrupt:  %d entries in %d undecodable records", r.corrupt, r.undecodable)
	if st.DroppedCorruptRecords > 0 {
		fmt.Fprintf(w, "; %d entries in %d records skipped after damage found while reading",
			st.DroppedCorruptEntries, st.DroppedCorruptRecords)
	}
	fmt.Fprintln(w)
}

// dropOlder removes the entries of b older than minTS and returns how many
// it removed. Streams left empty are removed.
func dropOlder(b *exporter.Batch, minTS int64) int {
	dropped := 0
	streams := b.Streams[:0]
	for _, st := range b.Streams {
		kept := st.Entries[:0]
		for _, e := range st.Entries {
			if e.Timestamp < minTS {
				dropped++
				continue
			}
			kept = append(kept, e)
		}
		st.Entries = kept
		if len(kept) > 0 {
			streams = append(streams, st)
		}
	}
	b.Streams = streams
	return dropped
}

// dryRun reports what a replay of dir would send, reading without the lock.
func (a *app) dryRun(dir, target string, o *replayOpts) int {
	var records, entries, tooOld, undecodable, corrupt, pushes int64
	tenants := map[string]bool{}
	streams := map[streamKey]bool{}
	minTS := int64(math.MinInt64)
	if o.maxAge > 0 {
		minTS = a.now().Add(-o.maxAge).UnixNano()
	}
	in, err := spool.Inspect(dir, spool.InspectOptions{Record: func(r spool.InspectedRecord) error {
		if r.Acknowledged {
			return nil
		}
		records++
		b, err := spool.DecodeBatch(r.Payload)
		if err != nil {
			undecodable++
			corrupt += int64(r.Entries)
			return nil
		}
		tooOld += int64(dropOlder(b, minTS))
		if b.Len() == 0 {
			return nil
		}
		pushes++
		entries += int64(b.Len())
		tenants[b.Tenant] = true
		for _, st := range b.Streams {
			streams[streamKey{b.Tenant, st.Labels}] = true
		}
		return nil
	}})
	if err != nil {
		fmt.Fprintf(a.stderr, "lokispool replay: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(a.stdout, "dry run: %s to %s:\n", dir, target)
	fmt.Fprintf(a.stdout, "  would send: %d entries in %d pushes (%d records, %d tenants, %d streams)\n",
		entries, pushes, records, len(tenants), len(streams))
	fmt.Fprintf(a.stdout, "  too old:    %d entries would be dropped (older than %v)\n", tooOld, o.maxAge)
	fmt.Fprintf(a.stdout, "  corrupt:    %d entries in %d undecodable records would be dropped\n", corrupt, undecodable)
	for _, g := range in.Segments {
		if d := g.Damage; d != nil {
			fmt.Fprintf(a.stdout, "  damage:     %s: %s at offset %d: %s\n", g.Name, d.Kind, d.Offset, d.Recovery)
		}
	}
	fmt.Fprintf(a.stdout, "nothing was sent or acknowledged\n")
	if in.Locked {
		fmt.Fprintf(a.stderr, "lokispool replay: note: %s is locked by another process: a replay would fail now\n", dir)
	}
	return exitOK
}

// redactURL returns u without user information and query, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery, u.ForceQuery, u.Fragment = "", false, ""
	return u.String()
}

// oneLine folds a multi-line reason into one line of at most 300 bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
