// Command chain is the profile package's unwinder test program: main calls
// a, a calls b, b calls c, c calls leaf. On amd64 (the host) c records its
// own registers, its stack and the runtime's view of its callers, so the
// test can unwind a real stack and compare; for arm the test reads only the
// binary.
package main

import (
	"encoding/json"
	"os"
	"runtime"
	"unsafe"
)

// regs returns its caller's SP and a PC in it (regs_amd64.s).
func regs() (sp, pc uintptr)

type dump struct {
	SP, PC  uintptr
	Stack   []uint64 // the words from SP up to the one holding the outermost return address
	Callers []uintptr
}

var out dump

//go:noinline
func leaf(n int) int { return n*3 + 1 }

//go:noinline
func c(n int) int {
	pcs := make([]uintptr, 32)
	// Callers first: it may grow the stack, which moves it.
	k := runtime.Callers(2, pcs) // from the return address into b
	words := make([]uint64, 0, 1<<14)
	sp, pc := regs()
	if sp != 0 {
		// No calls from here to the end of the loop: the stack must not move.
		last := uint64(pcs[k-1])
		for p := sp; len(words) < cap(words); p += 8 {
			w := *(*uint64)(unsafe.Pointer(p))
			words = append(words, w)
			if w == last {
				break
			}
		}
	}
	out = dump{SP: sp, PC: pc, Stack: words, Callers: pcs[:k]}
	return leaf(n) + 1
}

//go:noinline
func b(n int) int { return c(n+1) * 2 }

//go:noinline
func a(n int) int {
	var pad [3000]byte // a large frame
	pad[n%7] = byte(n)
	return b(n) + int(pad[n%5])
}

func main() {
	a(len(os.Args))
	json.NewEncoder(os.Stdout).Encode(out)
}
