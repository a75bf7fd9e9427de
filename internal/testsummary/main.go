// Command testsummary turns `go test -json` into readable output and keeps
// a tally of results across the several go test runs of `make test`, for
// its final summary line.
//
//	go test -json ./... | go run ./internal/testsummary -tally build/test-results.txt [-v] [-label name]
//	go run ./internal/testsummary -tally build/test-results.txt -fail 'step: reason'
//	go run ./internal/testsummary -tally build/test-results.txt -summary
//
// In the first form it prints what go test would without -v: package
// lines, the output of failed tests, and every skipped test with its
// reason (with -v, every line as it comes). It appends one line per test
// result (subtests included) to the tally file and exits 1 if anything
// failed: a test, or a package that failed without a failing test (a
// build error, a crash in TestMain). -fail records a failed step that is
// not a go test run. -summary prints the failures and skips recorded, then
// "N passed, N failed, N skipped", and exits 1 if any failed.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output, build-fail
}

// Result kinds in the tally file: kind TAB package TAB test TAB note.
const (
	pass = "pass"
	fail = "fail"
	skip = "skip"
)

func main() {
	tally := flag.String("tally", "", "file the results are appended to (required)")
	verbose := flag.Bool("v", false, "print every line of output as it comes")
	failStep := flag.String("fail", "", "record a failed step that is not a go test run")
	summary := flag.Bool("summary", false, "print the totals of the tally file")
	flag.StringVar(&label, "label", "", "name of this run, shown with its failures and skips")
	flag.Parse()
	if *tally == "" {
		fmt.Fprintln(os.Stderr, "testsummary: -tally is required")
		os.Exit(2)
	}
	switch {
	case *summary:
		f, err := os.Open(*tally)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testsummary: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		if !summarize(f, os.Stdout) {
			os.Exit(1)
		}
	default:
		f, err := os.OpenFile(*tally, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testsummary: %v\n", err)
			os.Exit(1)
		}
		ok := true
		if *failStep != "" {
			record(f, fail, "step", *failStep, "")
			ok = false
		} else {
			ok = follow(os.Stdin, os.Stdout, f, *verbose)
		}
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "testsummary: %v\n", err)
			ok = false
		}
		if !ok {
			os.Exit(1)
		}
	}
}

// label names the run the results come from (-label).
var label string

func record(w io.Writer, kind, pkg, test, note string) {
	if label != "" && pkg != "step" {
		pkg = label + ": " + pkg
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", kind, pkg, test, strings.ReplaceAll(note, "\t", " "))
}

// follow reads go test -json events from r, writes readable output to out
// and the results to tally, and reports whether nothing failed. Lines that
// are not JSON (go test's own messages) are passed through.
func follow(r io.Reader, out, tally io.Writer, verbose bool) bool {
	ok := true
	pending := map[string][]string{} // package+test -> output lines so far
	failedTests := map[string]bool{} // packages with a failed test
	buildFailed := map[string]bool{} // packages that did not compile
	sawPackage := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "build-output":
			fmt.Fprint(out, e.Output)
		case "build-fail":
			// Recorded with the package's fail event that follows.
			pkg, _, _ := strings.Cut(e.ImportPath, " ")
			buildFailed[pkg] = true
			ok = false
		case "output":
			switch {
			case verbose:
				fmt.Fprint(out, e.Output)
			case e.Test == "":
				if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "testing: warning: no tests to run") {
					fmt.Fprint(out, e.Output)
				}
			default:
				pending[key] = append(pending[key], e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				sawPackage = true
				switch {
				case e.Action != fail || failedTests[e.Package]:
				case buildFailed[e.Package]:
					record(tally, fail, e.Package, "(build failed)", "")
				default:
					record(tally, fail, e.Package, "(package)", "")
				}
				if e.Action == fail {
					ok = false
				}
				continue
			}
			lines := pending[key]
			delete(pending, key)
			switch e.Action {
			case fail:
				ok = false
				failedTests[e.Package] = true
				record(tally, fail, e.Package, e.Test, "")
				if !verbose {
					fmt.Fprint(out, strings.Join(lines, ""))
				}
			case skip:
				reason := skipReason(lines)
				record(tally, skip, e.Package, e.Test, reason)
				if !verbose {
					fmt.Fprintf(out, "--- SKIP: %s (%s): %s\n", e.Test, e.Package, reason)
				}
			default:
				record(tally, pass, e.Package, e.Test, "")
			}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(out, "testsummary: reading go test output: %v\n", err)
		return false
	}
	if !sawPackage {
		fmt.Fprintln(out, "testsummary: no package result in the go test output")
		record(tally, fail, "step", "go test reported no package result", "")
		return false
	}
	return ok
}

// skipReason is the message a skipped test logged, without the file:line
// prefix and the framing lines.
func skipReason(lines []string) string {
	var msg []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		if _, after, ok := strings.Cut(t, ".go:"); ok {
			if _, m, ok := strings.Cut(after, ": "); ok {
				t = m
			}
		}
		msg = append(msg, t)
	}
	if len(msg) == 0 {
		return "no reason given"
	}
	return strings.Join(msg, " ")
}

// summarize prints the failures and skips in the tally and the totals,
// and reports whether nothing failed.
func summarize(r io.Reader, out io.Writer) bool {
	var n = map[string]int{}
	var failed, skipped []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 4)
		if len(f) != 4 {
			continue
		}
		n[f[0]]++
		name := f[1] + " " + f[2]
		if f[1] == "step" {
			name = f[2]
		}
		switch f[0] {
		case fail:
			failed = append(failed, name)
		case skip:
			skipped = append(skipped, name+": "+f[3])
		}
	}
	for _, s := range skipped {
		fmt.Fprintf(out, "skipped: %s\n", s)
	}
	for _, s := range failed {
		fmt.Fprintf(out, "FAILED: %s\n", s)
	}
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", n[pass], n[fail], n[skip])
	return n[fail] == 0 && sc.Err() == nil
}
