package vm

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startLocked starts cmd with SIGTERM as its parent-death signal, so that
// it ends if this process dies without cleaning up, and calls done with
// Wait's error once it has exited.
//
// The signal comes when the thread that forked cmd ends, not the process
// (prctl(2), PR_SET_PDEATHSIG), and Go ends a thread whose goroutine exits
// while locked to it, as netns.Do's do. Forked from an arbitrary thread,
// cmd was killed whenever that thread happened to be one netns.Do later
// ran on: QEMU went away in mid-run. So cmd is forked and waited for on a
// thread locked here until it exits.
func startLocked(cmd *exec.Cmd, done func(error)) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done(cmd.Wait())
	}()
	return <-started
}
