package lokitest

// TB is the part of testing.TB that [NewTestServer] uses; *testing.T,
// *testing.B and *testing.F satisfy it. It keeps the package free of an
// import of "testing".
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// NewTestServer starts a server for a test and closes it when the test
// ends. It fails the test if the server cannot start.
func NewTestServer(t TB, opts ...Option) *Server {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatalf("lokitest: %v", err)
		return nil
	}
	t.Cleanup(s.Close)
	return s
}
