// Command benchsummary reads `go test -bench` output (several -count runs)
// on standard input and prints one table with the median of every metric
// per benchmark: ns/op, ns/packet, B/op, allocs/op, and any other unit the
// benchmarks report.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./... | go run ./internal/benchsummary
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Units shown first, in this order; others follow alphabetically.
var preferred = []string{"ns/op", "ns/packet", "B/op", "allocs/op"}

type bench struct {
	name    string
	runs    int
	samples map[string][]float64
}

type summary struct {
	order   []string
	benches map[string]*bench
	units   map[string]bool
}

// parse reads benchmark result lines, qualifying names with the package
// from the preceding "pkg:" line.
func parse(r io.Reader) (*summary, error) {
	s := &summary{benches: map[string]*bench{}, units: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	pkg := ""
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		// BenchmarkName-N  iterations  value unit  [value unit]...
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name := trimProcs(f[0])
		if pkg != "" {
			name = shortPkg(pkg) + "." + name
		}
		b := s.benches[name]
		if b == nil {
			b = &bench{name: name, samples: map[string][]float64{}}
			s.benches[name] = b
			s.order = append(s.order, name)
		}
		b.runs++
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			b.samples[f[i+1]] = append(b.samples[f[i+1]], v)
			s.units[f[i+1]] = true
		}
	}
	return s, sc.Err()
}

// trimProcs drops the -GOMAXPROCS suffix go test appends.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// shortPkg keeps the import path's part below the module root.
func shortPkg(p string) string {
	if _, rest, ok := strings.Cut(p, "github.com/tamanet/tamanet/"); ok {
		return rest
	}
	return p
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func format(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e15:
		return strconv.FormatInt(int64(v), 10)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func (s *summary) columns() []string {
	var cols []string
	for _, u := range preferred {
		if s.units[u] {
			cols = append(cols, u)
		}
	}
	var rest []string
	for u := range s.units {
		if !slices.Contains(preferred, u) {
			rest = append(rest, u)
		}
	}
	slices.Sort(rest)
	return append(cols, rest...)
}

func (s *summary) write(w io.Writer) error {
	if len(s.order) == 0 {
		_, err := fmt.Fprintln(w, "benchsummary: no benchmark results in input")
		return err
	}
	cols := s.columns()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "benchmark\truns\t")
	for _, c := range cols {
		fmt.Fprintf(tw, "%s\t", c)
	}
	fmt.Fprintln(tw)
	for _, n := range s.order {
		b := s.benches[n]
		fmt.Fprintf(tw, "%s\t%d\t", n, b.runs)
		for _, c := range cols {
			if v := b.samples[c]; len(v) > 0 {
				fmt.Fprintf(tw, "%s\t", format(median(v)))
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func main() {
	s, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(1)
	}
	fmt.Println("medians over runs:")
	if err := s.write(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(1)
	}
}
