package vm

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestStartLockedSurvivesThreadExit: the parent-death signal follows the
// forking thread, which Go ends when a goroutine exits locked to it (as
// netns.Do's do). A process forked from such a thread gets SIGTERM when
// it ends; one started by startLocked outlives any number of them, and
// done reports its end.
func TestStartLockedSurvivesThreadExit(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("SKIP: no sleep(1)")
	}
	// The kernel's side: fork from a locked thread, then end it.
	naive := exec.Command(sleep, "30")
	naive.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	forked := make(chan error)
	park := make(chan struct{})
	defer close(park)
	for {
		onMain := make(chan bool)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			if syscall.Gettid() == syscall.Getpid() {
				// Go never ends the main thread: keep it here,
				// out of the way, and try another.
				onMain <- true
				<-park
				return
			}
			onMain <- false
			forked <- naive.Start()
		}()
		if !<-onMain {
			break
		}
	}
	if err := <-forked; err != nil {
		t.Fatal(err)
	}
	err = naive.Wait()
	if ws, ok := naive.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("a process forked from a thread that ended: %v, want killed by SIGTERM", err)
	}

	// The same, started by startLocked from such a thread.
	cmd := exec.Command(sleep, "30")
	done := make(chan error, 1)
	for {
		onMain := make(chan bool)
		go func() {
			runtime.LockOSThread()
			if syscall.Gettid() == syscall.Getpid() {
				onMain <- true
				<-park
				return
			}
			onMain <- false
			forked <- startLocked(cmd, func(err error) { done <- err })
		}()
		if !<-onMain {
			break
		}
	}
	if err := <-forked; err != nil {
		t.Fatal(err)
	}
	for range 32 {
		ended := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(ended)
		}()
		<-ended
	}
	select {
	case err := <-done:
		t.Fatalf("the process ended while threads did: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("done not called after the process was killed")
	}
}
