// Package integration holds end-to-end tests of lokislog against a real
// receiver, VictoriaLogs, which speaks Loki's push protocol. It has no API;
// everything is in its _test.go files.
//
// # Running
//
// The tests need LOKISLOG_VICTORIALOGS_URL, the base URL of a running
// VictoriaLogs (such as http://127.0.0.1:9428). The project's test command,
//
//	bash scripts/test.sh
//
// installs VictoriaLogs with go install, starts it on 127.0.0.1 with a fresh
// data directory, exports the variable and runs them. Without the variable
// the tests are skipped with a message, unless CI=true, where they fail: CI
// must run them.
//
// # What is checked
//
//   - 100,000 records from 8 goroutines arrive exactly once, with their
//     stream labels and structured metadata, over protobuf and over JSON.
//   - A tenant (X-Scope-OrgID) keeps records apart from the default tenant.
//   - A period of 503 answers (with and without Retry-After) in the middle
//     of steady logging loses and duplicates nothing.
//   - VictoriaLogs is still alive after the tests.
//
// Every test labels its records with a random run_id, so runs against the
// same server never see each other's data. Counts are read back with LogsQL
// stats queries after /internal/force_flush; VictoriaLogs keeps duplicates,
// so an exact count plus count_uniq of a per-record sequence number shows
// every record arrived exactly once.
package integration
