package e2e

import (
	"os"
	"testing"
)

// TestSerialNoPanic runs last (files run in name order): the guest's
// console must show no panic or fault after everything above. TestMain
// checks the log once more after the guest has been stopped.
func TestSerialNoPanic(t *testing.T) {
	needGuest(t)
	b, err := os.ReadFile(serialPath)
	if err != nil {
		t.Fatal(err)
	}
	if p := findPanic(string(b)); p != "" {
		t.Fatalf("serial log shows a panic:\n%s", p)
	}
	if len(b) == 0 {
		t.Fatal("serial log is empty")
	}
}
