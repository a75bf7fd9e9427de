package e2e

import (
	"fmt"
	"testing"
	"time"
)

// idleWindow is how long TestIdle leaves the guest alone.
const idleWindow = 5 * time.Second

// TestIdle checks that an idle guest sleeps: with its NIC interrupt on, the
// poll loop wakes for maintenance (4 per second) and for the requests that
// read /stats, not every millisecond. It also logs the host CPU that the
// idle guest's QEMU process uses.
func TestIdle(t *testing.T) {
	needGuest(t)
	quietInUse(t) // let earlier traffic drain
	a := stats(t)
	time.Sleep(idleWindow)
	b := stats(t)
	if cpu, err := idleCPU(imagePath, idleWindow); err != nil {
		t.Logf("idle host CPU not measured: %v", err)
	} else {
		t.Logf("host CPU of the idle QEMU process: %.1f%% of a core", cpu)
		fmt.Printf("e2e figure: idle host CPU (%s) %.1f%%\n", *targetFlag, cpu)
	}
	if v, ok := stat(b, "poll.interrupt"); !ok || v != 1 {
		t.Fatalf("poll.interrupt = %v (present %v): the poll loop is not interrupt-driven on %s", v, ok, *targetFlag)
	}
	secs := mustStat(t, b, "uptime_seconds") - mustStat(t, a, "uptime_seconds")
	sleeps := mustStat(t, b, "poll.sleeps") - mustStat(t, a, "poll.sleeps")
	steps := mustStat(t, b, "poll.steps") - mustStat(t, a, "poll.steps")
	// 4 maintenance wake-ups a second, plus a handful for the one HTTP
	// request in the window; a 1 ms tick makes hundreds.
	if rate := sleeps / secs; rate > 20 {
		t.Errorf("idle guest: %.0f sleeps in %.1f s (%.1f/s), want at most 20/s", sleeps, secs, rate)
	}
	t.Logf("idle guest over %.1f s: %.0f poll sleeps (%.1f/s), %.0f steps", secs, sleeps, sleeps/secs, steps)
}
