// Command lokispool inspects a lokislog spool directory and replays it to
// Loki, for when the service that wrote it will not come back.
//
// Usage:
//
//	lokispool inspect [-json] [-streams] [-no-lock-check] DIR
//	lokispool replay -url URL [flags] DIR
//	lokispool help [inspect|replay]
//
// # inspect
//
// inspect prints the segments, records, entries, the time range of the
// pending (unacknowledged) entries, their tenants and streams (each with
// its entry count; listed with -streams, always in -json), the
// acknowledged cursor and every corrupt part: set-aside *.corrupt files,
// damage inside segments (offset, reason, and what the next Open would do
// with it) and records whose payload cannot be decoded. It only reads: it
// never truncates, renames, creates or removes a file, and it works while
// a service has the spool open, saying so (the files may then change while
// they are read). To tell whether the directory is locked it takes the
// lock for an instant when nobody holds it; -no-lock-check leaves that out.
//
// # replay
//
// replay opens the spool (taking its lock: it fails with a clear message
// while a live process holds it; Open's recovery then truncates torn tails
// and sets corrupt segments aside, as the service would have), and sends
// every unacknowledged record, oldest first, with the exporter's Loki
// client: protobuf+snappy or JSON+gzip, retries with backoff, 413 splits.
// Each record is acknowledged once Loki took it or rejected it for good, so
// an interrupted replay resumes where it stopped without duplicates (only
// the batch in flight at a crash may be sent again). Entries older than
// -max-age (default 168h, Loki's default reject_old_samples_max_age; 0
// keeps all) are dropped and counted. It prints progress on stderr and a
// summary on stdout: entries sent, rejected (with Loki's reasons), dropped
// as too old or corrupt, and what is left. A retryable failure (Loki down,
// 429, 5xx) that outlasts -max-retry-time stops the replay with the failed
// record and everything after it left in the spool.
//
// -tenant is the X-Scope-OrgID for records written without a tenant; a
// record's own tenant wins. The password and bearer token may come from
// LOKI_PASSWORD and LOKI_BEARER_TOKEN instead of the command line.
// -dry-run reads the spool without the lock, sends and changes nothing,
// and says what a replay would send.
//
// SIGINT or SIGTERM stops after the batch in flight (its outcome is
// acknowledged); a second one abandons that batch, which stays in the
// spool.
//
// # Exit codes
//
//	0    done: inspect succeeded; replay acknowledged every record (the
//	     summary lists rejected and dropped entries)
//	1    an error, or records left undelivered
//	2    bad usage or configuration
//	130  replay interrupted with records left
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lokislog/lokislog/internal/spool"

	_ "github.com/lokislog/lokislog/exporter/clientcert"
	_ "github.com/lokislog/lokislog/exporter/jsongzip"
)

// Exit codes.
const (
	exitOK          = 0
	exitFail        = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs lokispool with args (without the program name) and returns the
// exit code.
func run(args []string, stdout, stderr io.Writer) int {
	a := &app{
		stdout: stdout,
		stderr: stderr,
		getenv: os.Getenv,
		now:    time.Now,
		notify: func(c chan<- os.Signal) { signal.Notify(c, os.Interrupt, syscall.SIGTERM) },
		stop:   func(c chan<- os.Signal) { signal.Stop(c) },
	}
	return a.run(args)
}

// app is one run of the command, with its outside world.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// notify and stop register and unregister the channel that receives
	// interrupt signals.
	notify func(chan<- os.Signal)
	stop   func(chan<- os.Signal)
	// afterExport, when set, is called after each push of a replay (tests).
	afterExport func()
}

const usageText = `lokispool inspects a lokislog spool directory and replays it to Loki.

Usage:
  lokispool inspect [-json] [-streams] [-no-lock-check] DIR
  lokispool replay -url URL [flags] DIR
  lokispool help [inspect|replay]

Commands:
  inspect  show segments, records, entries, time range, streams, the cursor
           and corrupt parts; read only, works while a service holds the spool
  replay   send every unacknowledged record to Loki, oldest first,
           acknowledging as it goes (an interrupted replay resumes)

Run "lokispool help replay" for the replay flags.
Exit codes: 0 done, 1 error or records left undelivered, 2 bad usage,
130 replay interrupted.
`

func (a *app) run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "inspect":
		return a.inspect(args[1:])
	case "replay":
		return a.replay(args[1:])
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			switch args[1] {
			case "inspect":
				fs, _ := a.inspectFlags()
				fs.SetOutput(a.stdout)
				fs.Usage()
				return exitOK
			case "replay":
				fs, _ := a.replayFlags()
				fs.SetOutput(a.stdout)
				fs.Usage()
				return exitOK
			}
		}
		fmt.Fprint(a.stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(a.stderr, "lokispool: unknown command %q\n\n", args[0])
		fmt.Fprint(a.stderr, usageText)
		return exitUsage
	}
}

// parse parses args with fs, allowing flags after the positional
// arguments ("replay DIR -url X"). It returns the positional arguments;
// help is true for -h.
func parse(fs *flag.FlagSet, args []string) (pos []string, help bool, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, true, nil
			}
			return nil, false, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, false, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError prints msg and the flag set's usage, and returns exitUsage.
func (a *app) usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(a.stderr, "lokispool %s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.SetOutput(a.stderr)
	fs.Usage()
	return exitUsage
}

// checkDir explains why dir cannot be used as a spool, or returns "".
func checkDir(dir string) string {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s: no such directory", dir)
	case err != nil:
		return err.Error()
	case !fi.IsDir():
		return fmt.Sprintf("%s is not a directory", dir)
	}
	err = spool.CheckDir(dir)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, spool.ErrNotSpool):
		return fmt.Sprintf("%s is not a lokislog spool directory: it has no LOCK, cursor or segment file", dir)
	default:
		return err.Error()
	}
}

// setUsage gives fs a usage function printing head and its flags.
func setUsage(fs *flag.FlagSet, head string) {
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), head)
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
}
