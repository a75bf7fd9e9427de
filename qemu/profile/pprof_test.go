package profile

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// TestSampleToPprof runs the sampler against a fake stub that holds the
// amd64 test program's registers and stack, writes the profile, and reads
// it back with the pprof library and with go tool pprof.
func TestSampleToPprof(t *testing.T) {
	path, d := chainDump(t)
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mem := d.mem()
	// gdb's amd64 register file: 16 general registers, then rip.
	regs := make([]byte, 24*8)
	binary.LittleEndian.PutUint64(regs[7*8:], d.SP)
	binary.LittleEndian.PutUint64(regs[16*8:], d.PC)
	g, f := newFake(t, func(f *fakeStub, p string) {
		switch {
		case p == "^C":
			f.send("T02thread:01;")
		case p == "g":
			f.send(hex.EncodeToString(regs))
		case strings.HasPrefix(p, "m"):
			var addr, n uint64
			if _, err := fmt.Sscanf(p, "m%x,%x", &addr, &n); err != nil {
				f.send("E01")
				return
			}
			buf := make([]byte, n)
			mem.ReadMemory(addr, buf)
			f.send(hex.EncodeToString(buf))
		}
	})
	var st Stacks
	stats, err := Sample(context.Background(), g, b, &st, 200, 300*time.Millisecond, 64)
	if err != nil {
		for len(f.got) > 0 {
			t.Log(<-f.got)
		}
		t.Fatal(err)
	}
	// The guest runs between samples: a 200 Hz run of 300 ms takes at
	// most 60 samples.
	if stats.Samples < 5 || stats.Samples > 60 || st.Len() != int64(stats.Samples) {
		t.Fatalf("%d samples (%d in stacks) in %v", stats.Samples, st.Len(), stats.Elapsed)
	}
	if stats.Depth != len(d.Callers)+1 || stats.Complete != stats.Samples || stats.Stopped <= 0 || stats.Stopped > stats.Elapsed {
		t.Errorf("stats %+v", stats)
	}
	// The stub acks before it records: wait for the last request.
	var stops, conts int
	timeout := time.After(5 * time.Second)
	for stops < stats.Samples || conts < stats.Samples {
		select {
		case p := <-f.got:
			switch p {
			case "^C":
				stops++
			case "c":
				conts++
			}
		case <-timeout:
			t.Fatalf("%d stops and %d continues for %d samples", stops, conts, stats.Samples)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if len(f.got) > 0 {
		t.Errorf("requests after the last sample: %q", <-f.got)
	}

	const period = 5 * time.Millisecond
	p := st.Profile(b, path, period, stats.Elapsed)
	var buf bytes.Buffer
	if err := WriteProfile(&buf, p); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "p.pb.gz")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	q, err := profile.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Sample) != 1 || q.Sample[0].Value[0] != int64(stats.Samples) || q.Sample[0].Value[1] != int64(stats.Samples)*period.Nanoseconds() {
		t.Fatalf("samples %v", q.Sample)
	}
	var fns []string
	for _, l := range q.Sample[0].Location {
		ln := l.Line[len(l.Line)-1]
		fns = append(fns, ln.Function.Name)
		if ln.Function.Filename == "" || ln.Line <= 0 {
			t.Errorf("location %#x: no file:line (%+v)", l.Address, ln)
		}
	}
	want := []string{"main.c", "main.b", "main.a", "main.main", "runtime.main", "runtime.goexit"}
	if !slices.Equal(fns, want) {
		t.Errorf("stack %v, want %v", fns, want)
	}
	// The leaf's line is the call to regs in main.c.
	leaf := q.Sample[0].Location[0].Line[0]
	if !strings.HasSuffix(leaf.Function.Filename, "testdata/chain/main.go") {
		t.Errorf("leaf file %s", leaf.Function.Filename)
	}

	out, err := exec.Command("go", "tool", "pprof", "-top", file).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("main.c")) || !bytes.Contains(out, []byte("100%")) {
		t.Errorf("go tool pprof -top:\n%s", out)
	}
}
