// Package vm boots a tamanet image under QEMU on a tap device inside a
// private network namespace, watches its serial console for the ready line,
// and always tears both down again.
//
// The namespace holds the tap (host side 10.0.0.2/24, guest 10.0.0.1), so
// nothing the guest sends or receives reaches any other network. Host tools
// reach the guest with Netns.Command (`ip netns exec NAME ...`).
//
//	v, err := vm.Start(ctx, vm.Options{Target: vm.Microvm, Image: "build/tamanet-microvm"})
//	if err != nil { ... }
//	defer v.Close()
//	ready, err := v.WaitReady(ctx, time.Minute)
package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tamanet/tamanet/internal/netns"
)

// ErrQEMUMissing is returned by Start when the target's QEMU binary is not
// installed.
var ErrQEMUMissing = errors.New("QEMU binary not found")

// Options says what to boot and where.
type Options struct {
	// Target selects the QEMU machine and command line.
	Target Target
	// Image is the firmware image (build/tamanet-TARGET).
	Image string
	// Accel is the requested accelerator; "" means Auto.
	Accel Accel
	// Netns names the namespace to create. "" picks the first free
	// tamanet0, tamanet1, ...; an existing name is refused.
	Netns string
	// Tap is the tap device name; "" means "tap0".
	Tap string
	// HostAddr is the host side address; "" means netns.DefaultHostAddr.
	HostAddr string
	// Console, if set, receives the serial output as it arrives.
	Console io.Writer
	// Stdin, if set, is QEMU's standard input (the serial console's
	// input). Nil means /dev/null.
	Stdin *os.File
	// QEMU overrides the emulator binary (tests use a stand-in); ""
	// means the target's qemu-system-*.
	QEMU string
	// GDB, if set, is a unix socket path for QEMU's gdb stub (qemu/profile
	// samples the guest through it). A unix socket, not TCP: QEMU runs
	// inside the namespace, whose loopback the host cannot reach.
	GDB string
	// Linux, if set, boots Image as a Linux kernel (LinuxArgs).
	Linux *Linux
}

// VM is one running QEMU guest in its namespace.
type VM struct {
	ns        *netns.Netns
	cmd       *exec.Cmd
	args      []string
	accel     Accel
	accelNote string
	console   io.Writer

	mu       sync.Mutex
	serial   bytes.Buffer
	stderr   bytes.Buffer
	line     []byte
	ready    Ready
	readyErr error
	readyCh  chan struct{}
	readyHit bool

	done    chan struct{}
	waitErr error

	closeOnce sync.Once
	closeErr  error
}

// Start creates the namespace and tap, then starts QEMU inside it. On error
// nothing is left running and the namespace is gone.
func Start(ctx context.Context, o Options) (*VM, error) {
	if _, err := ParseTarget(string(o.Target)); err != nil {
		return nil, err
	}
	if o.Accel == "" {
		o.Accel = Auto
	}
	if _, err := ParseAccel(string(o.Accel)); err != nil {
		return nil, err
	}
	if o.Tap == "" {
		o.Tap = "tap0"
	}
	if o.HostAddr == "" {
		o.HostAddr = netns.DefaultHostAddr
	}
	if st, err := os.Stat(o.Image); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	} else if st.IsDir() {
		return nil, fmt.Errorf("image %s is a directory", o.Image)
	}
	bin := o.QEMU
	if bin == "" {
		bin = o.Target.QEMUBinary()
	}
	qemu, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %s (install it with `make deps`)", ErrQEMUMissing, bin)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("iproute2 `ip` not found: %w", err)
	}
	v := &VM{console: o.Console, readyCh: make(chan struct{}), done: make(chan struct{})}
	v.accel, v.accelNote = ResolveAccel(o.Target, o.Accel)
	if o.Linux != nil {
		v.args = append([]string{qemu}, LinuxArgs(o.Target, o.Image, v.accel, o.Tap, *o.Linux)...)
	} else {
		v.args = append([]string{qemu}, Args(o.Target, o.Image, v.accel, o.Tap)...)
	}
	if o.GDB != "" {
		v.args = append(v.args, "-gdb", "unix:"+o.GDB+",server=on,wait=off")
	}

	name := o.Netns
	if name == "" {
		if name, err = netns.FreeName("tamanet"); err != nil {
			return nil, err
		}
	}
	if v.ns, err = netns.Create(ctx, name, o.Tap, o.HostAddr); err != nil {
		return nil, err
	}

	// `ip netns exec` enters the namespace and execs QEMU in place, so the
	// process we signal is QEMU itself.
	v.cmd = exec.Command("ip", append([]string{"netns", "exec", name}, v.args...)...)
	// Only a non-nil file goes into Stdin: a nil *os.File there is a
	// non-nil io.Reader, and exec then starts QEMU with fd 0 closed.
	// QEMU opens the tap as its lowest free descriptor, 0, which
	// `-serial stdio` also polls: each time the console read (1 byte, too
	// small for a frame) wins, the tap driver frees the frame at the head
	// of its queue, uncounted. Left unset, Stdin is /dev/null.
	if o.Stdin != nil {
		v.cmd.Stdin = o.Stdin
	}
	v.cmd.Stdout = serialWriter{v}
	v.cmd.Stderr = stderrWriter{v}
	// If this process dies without cleaning up, QEMU goes too
	// (startLocked).
	v.cmd.WaitDelay = 2 * time.Second
	if err := startLocked(v.cmd, func(err error) {
		v.mu.Lock()
		v.waitErr = err
		v.mu.Unlock()
		close(v.done)
	}); err != nil {
		v.ns.Delete()
		return nil, fmt.Errorf("start %s: %w", qemu, err)
	}
	go func() {
		select {
		case <-ctx.Done():
			v.Close()
		case <-v.done:
		}
	}()
	return v, nil
}

type serialWriter struct{ v *VM }

func (w serialWriter) Write(p []byte) (int, error) {
	v := w.v
	v.mu.Lock()
	v.serial.Write(p)
	for _, c := range p {
		if c != '\n' {
			v.line = append(v.line, c)
			continue
		}
		v.scanLine()
		v.line = v.line[:0]
	}
	v.mu.Unlock()
	if v.console != nil {
		v.console.Write(p)
	}
	return len(p), nil
}

// scanLine checks the completed line for the ready line; v.mu is held.
func (v *VM) scanLine() {
	if v.readyHit {
		return
	}
	r, ok, err := ParseReady(string(v.line))
	if !ok {
		return
	}
	v.ready, v.readyErr, v.readyHit = r, err, true
	close(v.readyCh)
}

type stderrWriter struct{ v *VM }

func (w stderrWriter) Write(p []byte) (int, error) {
	w.v.mu.Lock()
	w.v.stderr.Write(p)
	w.v.mu.Unlock()
	if w.v.console != nil {
		w.v.console.Write(p)
	}
	return len(p), nil
}

// WaitReady waits up to timeout for the ready line. It fails, with the
// serial log in the error, when the line does not come in time, is
// malformed, or QEMU exits first.
func (v *VM) WaitReady(ctx context.Context, timeout time.Duration) (Ready, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-v.readyCh:
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.ready, v.readyErr
	case <-v.done:
		// The ready line may have been the last thing written.
		select {
		case <-v.readyCh:
			return v.ready, v.readyErr
		default:
		}
		return Ready{}, fmt.Errorf("QEMU exited before the ready line (%v)\n%s", v.Err(), v.Log())
	case <-t.C:
		return Ready{}, fmt.Errorf("no ready line within %v\n%s", timeout, v.Log())
	case <-ctx.Done():
		return Ready{}, fmt.Errorf("waiting for the ready line: %w\n%s", ctx.Err(), v.Log())
	}
}

// Serial returns everything the guest printed on its console so far.
func (v *VM) Serial() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.serial.String()
}

// Stderr returns QEMU's own diagnostics.
func (v *VM) Stderr() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stderr.String()
}

// Log returns the command line, serial log and QEMU's stderr, for error
// reports.
func (v *VM) Log() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- command: %s\n--- serial log:\n%s", v.CommandLine(), v.Serial())
	if s := v.Stderr(); s != "" {
		fmt.Fprintf(&b, "\n--- qemu stderr:\n%s", s)
	}
	return b.String()
}

// Netns returns the namespace the guest's tap lives in.
func (v *VM) Netns() *netns.Netns { return v.ns }

// Accel returns the accelerator in use and why it was chosen.
func (v *VM) Accel() (Accel, string) { return v.accel, v.accelNote }

// CommandLine returns the QEMU command line as run inside the namespace.
func (v *VM) CommandLine() string { return strings.Join(v.args, " ") }

// Done is closed when QEMU has exited.
func (v *VM) Done() <-chan struct{} { return v.done }

// Err returns QEMU's exit status once Done is closed.
func (v *VM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.waitErr
}

// terminate stops the process p whose exit closes done: SIGTERM, then
// SIGKILL if it has not exited after 3 s. It returns once done is closed.
func terminate(p *os.Process, done <-chan struct{}) {
	select {
	case <-done:
		return
	default:
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		p.Kill()
		<-done
	}
}

// Close stops QEMU (SIGTERM, then SIGKILL after 3 s) and deletes the
// namespace. It is safe to call more than once and from several goroutines.
func (v *VM) Close() error {
	v.closeOnce.Do(func() {
		terminate(v.cmd.Process, v.done)
		v.closeErr = v.ns.Delete()
	})
	return v.closeErr
}
