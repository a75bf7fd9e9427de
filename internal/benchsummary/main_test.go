package main

import (
	"strings"
	"testing"
)

const input = `goos: linux
goarch: amd64
pkg: github.com/tamanet/tamanet/alloc
cpu: Intel
BenchmarkGetPut-2   	 1000000	        30.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkGetPut-2   	 1000000	        10.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkGetPut-2   	 1000000	        20.0 ns/op	       0 B/op	       0 allocs/op
PASS
ok  	github.com/tamanet/tamanet/alloc	3.1s
pkg: github.com/tamanet/tamanet/nic/virtio
BenchmarkRx/batch=1-2 	  500000	       400 ns/op	        95.5 ns/packet	  16 B/op	       1 allocs/op
BenchmarkRx/batch=1-2 	  500000	       300 ns/op	        90.5 ns/packet	  16 B/op	       1 allocs/op
--- FAIL: BenchmarkBroken
BenchmarkNoise this is not a result line
`

func TestSummary(t *testing.T) {
	s, err := parse(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.order) != 2 || s.order[0] != "alloc.BenchmarkGetPut" || s.order[1] != "nic/virtio.BenchmarkRx/batch=1" {
		t.Fatalf("benchmarks %q", s.order)
	}
	g := s.benches["alloc.BenchmarkGetPut"]
	if g.runs != 3 || median(g.samples["ns/op"]) != 20 {
		t.Fatalf("GetPut runs %d ns/op median %v", g.runs, median(g.samples["ns/op"]))
	}
	r := s.benches["nic/virtio.BenchmarkRx/batch=1"]
	if median(r.samples["ns/op"]) != 350 || median(r.samples["ns/packet"]) != 93 {
		t.Fatalf("Rx medians %v %v", median(r.samples["ns/op"]), median(r.samples["ns/packet"]))
	}
	var b strings.Builder
	if err := s.write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", out)
	}
	if h := strings.Fields(lines[0]); strings.Join(h, " ") != "benchmark runs ns/op ns/packet B/op allocs/op" {
		t.Fatalf("header %q", h)
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "alloc.BenchmarkGetPut 3 20 - 0 0" {
		t.Fatalf("row %q", f)
	}
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != "nic/virtio.BenchmarkRx/batch=1 2 350 93 16 1" {
		t.Fatalf("row %q", f)
	}
}

func TestEmpty(t *testing.T) {
	s, _ := parse(strings.NewReader("PASS\n"))
	var b strings.Builder
	s.write(&b)
	if !strings.Contains(b.String(), "no benchmark results") {
		t.Fatalf("%q", b.String())
	}
}

func TestTrimProcs(t *testing.T) {
	for in, want := range map[string]string{"BenchmarkA-8": "BenchmarkA", "BenchmarkA": "BenchmarkA", "BenchmarkA/size-big": "BenchmarkA/size-big", "BenchmarkA/n=1-16": "BenchmarkA/n=1"} {
		if got := trimProcs(in); got != want {
			t.Errorf("%s -> %s, want %s", in, got, want)
		}
	}
}
