package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goTestJSON runs go test -json over a throwaway module holding a passing,
// a failing and a skipped test (one with subtests), a package that does
// not compile and one whose TestMain fails without a failing test.
func goTestJSON(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/m\n\ngo 1.26\n",
		"a/a_test.go": `package a

import "testing"

func TestPass(t *testing.T) {
	t.Run("one", func(t *testing.T) {})
	t.Run("two", func(t *testing.T) {})
}

func TestFail(t *testing.T) { t.Log("detail of the failure"); t.Fatal("it broke") }

func TestSkip(t *testing.T) { t.Skip("SKIP: needs a thing") }
`,
		"b/b_test.go": "package b\n\nimport \"testing\"\n\nfunc TestX(t *testing.T) { var _ int = \"no\" }\n",
		"c/c_test.go": `package c

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) { println("c: setup failed"); os.Exit(1) }

func TestNeverRuns(t *testing.T) {}
`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-json", "-count=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	if err == nil {
		t.Fatalf("go test passed a module with failures:\n%s", out)
	}
	return out
}

func TestFollowAndSummarize(t *testing.T) {
	js := goTestJSON(t)
	var out, tally bytes.Buffer
	if follow(bytes.NewReader(js), &out, &tally, false) {
		t.Fatal("follow reported success")
	}
	o := out.String()
	for _, want := range []string{"detail of the failure", "it broke", "--- SKIP: TestSkip (example.com/m/a): SKIP: needs a thing", "c: setup failed", `"no"`} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
	if strings.Contains(o, "=== RUN   TestPass") {
		t.Errorf("passing tests' output printed:\n%s", o)
	}

	var sum bytes.Buffer
	if summarize(bytes.NewReader(tally.Bytes()), &sum) {
		t.Error("summarize reported success")
	}
	s := sum.String()
	// Passed: TestPass and its two subtests. Failed: TestFail, package b
	// (build), package c (TestMain). Skipped: TestSkip.
	if !strings.Contains(s, "3 passed, 3 failed, 1 skipped\n") {
		t.Errorf("summary:\n%s\ntally:\n%s", s, tally.String())
	}
	for _, want := range []string{"FAILED: example.com/m/a TestFail", "FAILED: example.com/m/b (build failed)", "FAILED: example.com/m/c (package)", "skipped: example.com/m/a TestSkip: SKIP: needs a thing"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func TestSummarizeClean(t *testing.T) {
	var tally bytes.Buffer
	record(&tally, pass, "p", "TestA", "")
	record(&tally, pass, "p", "TestB", "")
	var sum bytes.Buffer
	if !summarize(bytes.NewReader(tally.Bytes()), &sum) || sum.String() != "2 passed, 0 failed, 0 skipped\n" {
		t.Fatalf("%q", sum.String())
	}
	record(&tally, fail, "step", "fuzz: exit status 1", "")
	label = "e2e microvm"
	record(&tally, skip, "p", "TestC", "why")
	label = ""
	sum.Reset()
	if summarize(bytes.NewReader(tally.Bytes()), &sum) {
		t.Fatal("a failed step passed")
	}
	if want := "skipped: e2e microvm: p TestC: why\nFAILED: fuzz: exit status 1\n2 passed, 1 failed, 1 skipped\n"; sum.String() != want {
		t.Fatalf("summary %q, want %q", sum.String(), want)
	}
}

// A stream with no package result (go test died before reporting one)
// is a failure.
func TestFollowNoResult(t *testing.T) {
	var out, tally bytes.Buffer
	if follow(strings.NewReader("go: something went wrong\n"), &out, &tally, false) {
		t.Fatal("accepted")
	}
	var sum bytes.Buffer
	if summarize(&tally, &sum) || !strings.Contains(sum.String(), "0 passed, 1 failed, 0 skipped") {
		t.Fatalf("not counted as a failure: %q", sum.String())
	}
}
