package stack

import (
	"net/netip"
	"reflect"
	"time"
	"unicode"

	"github.com/tamanet/tamanet/alloc"
	"github.com/tamanet/tamanet/nic"
	"github.com/tamanet/tamanet/stack/link"

	"gvisor.dev/gvisor/pkg/tcpip"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Stats is a snapshot of everything the stack counts, shaped for JSON.
type Stats struct {
	// UptimeSeconds is the time since New.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Pool is the packet pool.
	Pool alloc.Stats `json:"pool"`
	// NIC is the driver's per-ring counters and drops by cause.
	NIC nic.Stats `json:"nic"`
	// Offloads is the work the device does in place of the stack, as
	// negotiated (all false for a driver without offloads, or with them
	// turned off).
	Offloads nic.Offloads `json:"offloads"`
	// Endpoint is the link endpoint's counters: frames delivered to and
	// taken from gVisor, and what it dropped (filtered, runt, no buffer,
	// ring full, ...).
	Endpoint link.Stats `json:"endpoint"`
	// Poll is the poll loop's activity.
	Poll PollStats `json:"poll"`
	// IPv6 lists the interface's IPv6 addresses (link-local, static,
	// SLAAC) when IPv6 is on.
	IPv6 []string `json:"ipv6,omitempty"`
	// TCPIP holds gVisor's non-zero counters, nested as in tcpip.Stats
	// (e.g. tcpip["tcp"]["active_connection_openings"]) plus the NIC's
	// under "nic".
	TCPIP map[string]any `json:"tcpip"`
	// TCP lists the TCP connections (listeners left out), at most
	// MaxListedConns of them, to tell which peer holds a connection open;
	// TCPTotal counts them all.
	TCP      []Conn `json:"tcp_connections,omitempty"`
	TCPTotal int    `json:"tcp_connections_total"`
}

// Conn is one TCP connection in Stats.
type Conn struct {
	Local  string `json:"local"`
	Remote string `json:"remote"`
	// State is gVisor's name for the TCP state, e.g. ESTABLISHED,
	// CLOSE-WAIT, TIME-WAIT.
	State string `json:"state"`
}

// MaxListedConns bounds Stats.TCP, so that a stats page stays small with
// many connections open.
const MaxListedConns = 64

// PollStats counts poll loop steps.
type PollStats struct {
	Steps uint64 `json:"steps"`
	// Busy counts steps that found work.
	Busy uint64 `json:"busy"`
	// Sleeps counts idle sleeps of the runner; Wakes those ended by Wake.
	Sleeps uint64 `json:"sleeps"`
	Wakes  uint64 `json:"wakes"`
	// Interrupt says an idle runner waits for Wake instead of ticking
	// (SetInterrupt).
	Interrupt bool `json:"interrupt"`
	// ClockReads counts reads of the time by gVisor's clock and the
	// runner: at most one per step while the runner is busy.
	ClockReads uint64 `json:"clock_reads"`
}

// Stats returns a snapshot of the stack's counters. It allocates (the
// gVisor part is a map) and is meant for a stats page, not a hot path.
func (s *Stack) Stats() Stats {
	st := Stats{
		UptimeSeconds: time.Since(s.start).Seconds(),
		Pool:          s.dev.Pool().Stats(),
		Poll: PollStats{
			Steps:      s.steps.Load(),
			Busy:       s.busy.Load(),
			Sleeps:     s.sleeps.Load(),
			Wakes:      s.wakes.Load(),
			Interrupt:  s.irq.Load(),
			ClockReads: s.clock.Reads(),
		},
	}
	for _, a := range s.Addrs6() {
		st.IPv6 = append(st.IPv6, a.String())
	}
	s.dev.Stats(&st.NIC)
	if ol, ok := s.dev.(nic.Offloader); ok {
		st.Offloads = ol.Offloads()
	}
	s.ep.Stats(&st.Endpoint)
	m := counters(reflect.ValueOf(s.gv.Stats()))
	if m == nil {
		m = map[string]any{}
	}
	if info, ok := s.gv.NICInfo()[NICID]; ok {
		if n := counters(reflect.ValueOf(info.Stats)); n != nil {
			m["nic"] = n
		}
	}
	st.TCPIP = m
	st.TCP, st.TCPTotal = s.conns()
	return st
}

// conns lists the TCP endpoints registered with gVisor that are not
// listening.
func (s *Stack) conns() ([]Conn, int) {
	var list []Conn
	n := 0
	for _, e := range s.gv.RegisteredEndpoints() {
		ep, ok := e.(*tcp.Endpoint)
		if !ok {
			continue
		}
		state := tcp.EndpointState(ep.State())
		if state == tcp.StateListen {
			continue
		}
		n++
		if len(list) == MaxListedConns {
			continue
		}
		info, ok := ep.Info().(*gvstack.TransportEndpointInfo)
		if !ok {
			continue
		}
		id := info.ID
		list = append(list, Conn{
			Local:  hostPort(id.LocalAddress, id.LocalPort),
			Remote: hostPort(id.RemoteAddress, id.RemotePort),
			State:  state.String(),
		})
	}
	return list, n
}

func hostPort(a tcpip.Address, port uint16) string {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip, port).String()
}

var statCounterType = reflect.TypeOf((*tcpip.StatCounter)(nil))

// counters walks a gVisor stats struct and returns its non-zero
// *tcpip.StatCounter values in nested maps keyed by snake_case field name,
// or nil when all are zero.
func counters(v reflect.Value) map[string]any {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var m map[string]any
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		var val any
		switch {
		case f.Type == statCounterType:
			if fv.IsNil() {
				continue
			}
			n := fv.Interface().(*tcpip.StatCounter).Value()
			if n == 0 {
				continue
			}
			val = n
		case f.Type.Kind() == reflect.Struct || (f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct):
			sub := counters(fv)
			if sub == nil {
				continue
			}
			if f.Anonymous { // an embedded group's counters belong to the parent
				if m == nil {
					m = make(map[string]any)
				}
				for k, v := range sub {
					m[k] = v
				}
				continue
			}
			val = sub
		default:
			continue
		}
		if m == nil {
			m = make(map[string]any)
		}
		m[snake(f.Name)] = val
	}
	return m
}

// snake turns a Go field name into snake_case: "ICMP" -> "icmp",
// "PacketsReceived" -> "packets_received", "V4" -> "v4".
func snake(s string) string {
	r := []rune(s)
	out := make([]rune, 0, len(r)+4)
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]))
			// An acronym ends before a capital that starts a word
			// ("IPTables"), but a plural "s" stays with it ("NICs").
			nextLower := i > 0 && i+2 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsLower(r[i+2]) && unicode.IsUpper(r[i-1])
			if prevLower || nextLower {
				out = append(out, '_')
			}
			out = append(out, unicode.ToLower(c))
			continue
		}
		out = append(out, c)
	}
	return string(out)
}
