package spool

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lokislog/lokislog/exporter"
)

// BenchmarkAppend measures AppendMark of 200-byte payloads (one small
// record per log record in "always" mode) on both append paths (mmap:
// a copy into the mapping; write: one write(2)), against a plain
// sequential write of the same frame bytes to an os.File, the floor of one
// write(2) per record.
func BenchmarkAppend(b *testing.B) {
	p := payload(1, 200)
	for _, w := range writers {
		for _, mode := range []SyncMode{SyncNever, SyncInterval} {
			b.Run("spool/"+w.name+"/"+string(mode), func(b *testing.B) {
				if !w.noMmap && !mmapSupported {
					b.Skip("no mmap writer on this system")
				}
				s, err := Open(Options{Dir: b.TempDir(), Sync: mode, NoMmap: w.noMmap})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				b.ReportAllocs()
				b.SetBytes(int64(len(p)))
				for b.Loop() {
					if _, err := s.AppendMark(p, 1, 1); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	// "always" mode's append: a frame built (PutFrame) before the call,
	// copied into the mapping under the spool's lock.
	b.Run("frame/mmap/never", func(b *testing.B) {
		if !mmapSupported {
			b.Skip("no mmap writer on this system")
		}
		s, err := Open(Options{Dir: b.TempDir(), Sync: SyncNever})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		frame := frameOf(b, p, 1, 1)
		b.ReportAllocs()
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, err := s.AppendFrameMark(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline/os.File.Write", func(b *testing.B) {
		f, err := os.OpenFile(filepath.Join(b.TempDir(), "plain"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		frame := make([]byte, frameHeaderSize+len(p))
		copy(frame[frameHeaderSize:], p)
		putFrameHeader(frame, 1, 1)
		b.ReportAllocs()
		b.SetBytes(int64(len(p)))
		n := 0
		for b.Loop() {
			if _, err := f.Write(frame); err != nil {
				b.Fatal(err)
			}
			// Start over like the spool's MaxBytes bound does, so both
			// write into files of similar size.
			if n += len(frame); n >= int(DefaultSegmentSize) {
				f.Truncate(0)
				n = 0
			}
		}
	})
}

// BenchmarkNextAck measures reading back and acknowledging 200-byte
// records, the other half of "always" mode.
func BenchmarkNextAck(b *testing.B) {
	p := payload(1, 200)
	s, err := Open(Options{Dir: b.TempDir(), Sync: SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Append(p, 1, 1); err != nil {
			b.Fatal(err)
		}
		r, err := s.Next()
		if err != nil {
			b.Fatal(err)
		}
		if i++; i%100 == 0 {
			if err := s.Ack(r.Pos); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkBatchCodec(b *testing.B) {
	batch := sampleBatch()
	buf := AppendBatch(nil, batch)
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendBatch(buf[:0], batch)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeBatch(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("range", func(b *testing.B) {
		var d BatchDecoder
		n := 0
		fn := func(tenant, labels string, e exporter.Entry) { n += len(e.Line) }
		b.ReportAllocs()
		for b.Loop() {
			if err := d.Range(buf, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The buffer's record in "always" mode: one entry, about 200 bytes.
	one := replayRecord()
	b.Run("decode-one", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeBatch(one); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("range-one", func(b *testing.B) {
		var d BatchDecoder
		n := 0
		fn := func(tenant, labels string, e exporter.Entry) { n += len(e.Line) }
		b.ReportAllocs()
		for b.Loop() {
			if err := d.Range(one, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestAppendDoesNotAllocate(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		s := openT(t, Options{NoMmap: noMmap, Sync: SyncNever})
		p := payload(1, 200)
		s.Append(p, 1, 1) // creates the segment and the frame buffer
		allocs := testing.AllocsPerRun(1000, func() {
			if err := s.Append(p, 1, 1); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("Append allocates %v times per call", allocs)
		}
	})
}

// TestAppendOneWrite checks that an Append is one write call: nothing is
// held in user space, so a killed process loses nothing Append returned
// for.
func TestAppendOneWrite(t *testing.T) {
	ffs := &faultFS{}
	s := openT(t, Options{FS: ffs, Sync: SyncNever})
	s.Append(payload(0, 20), 1, 0)
	writes := 0
	ffs.set(false, func(op, name string) error {
		if op == "write" {
			writes++
		}
		return nil
	})
	for i := range 10 {
		if err := s.Append(payload(i, 200), 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	if writes != 10 {
		t.Fatalf("10 appends made %d writes", writes)
	}
	// The bytes are in the file, not in a buffer.
	fi, err := os.Stat(filepath.Join(s.o.Dir, segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(headerSize + 40 + 10*220); fi.Size() != want {
		t.Fatalf("file has %d bytes, want %d", fi.Size(), want)
	}
}
