package service

import (
	"encoding/json"
	"html/template"
	"net/http"
	"runtime"
	"sort"
	"time"
)

var errServerClosed = http.ErrServerClosed

func newHTTPServer(cfg Config) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { index(w, cfg) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		// ?gc=1 collects garbage first, so heap figures are the live
		// heap (the soak test's leak check); it costs a collection.
		if r.URL.Query().Get("gc") == "1" {
			runtime.GC()
		}
		stats(w, cfg)
	})
	mux.HandleFunc("GET /debug/goroutines", goroutines)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

var indexPage = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tamanet</title></head>
<body>
<h1>tamanet</h1>
<p>A bare-metal Go unikernel (<a href="https://github.com/usbarmory/tamago">TamaGo</a>)
with its own network driver and packet pool, running gVisor's TCP/IP stack.
No operating system is involved: this page was served by Go's net/http
straight from the driver's DMA rings.</p>
<table>
{{range .Info}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>
{{end}}</table>
<h2>Services</h2>
<ul>
<li>ICMP echo (ping)</li>
<li>echo on UDP and TCP port 7 (RFC 862)</li>
<li>discard on TCP port 9 (RFC 863)</li>
<li>chargen on TCP port 19 (RFC 864), an endless stream</li>
<li>HTTP on port 80: this page, <a href="/stats">/stats</a> (JSON counters) and
<a href="/debug/goroutines">/debug/goroutines</a> (every goroutine's stack)</li>
</ul>
</body></html>
`))

type kv struct{ K, V string }

func index(w http.ResponseWriter, cfg Config) {
	// The page is the same on every request (uptime and counters are
	// in /stats), so it can be compared and cached.
	var data struct {
		Info []kv
	}
	for k, v := range cfg.Info {
		data.Info = append(data.Info, kv{k, v})
	}
	sort.Slice(data.Info, func(i, j int) bool { return data.Info[i].K < data.Info[j].K })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	indexPage.Execute(w, data)
}

// MemStats is the part of runtime.MemStats shown in /stats.
type MemStats struct {
	HeapAlloc    uint64 `json:"heap_alloc"`
	HeapSys      uint64 `json:"heap_sys"`
	HeapObjects  uint64 `json:"heap_objects"`
	Sys          uint64 `json:"sys"`
	TotalAlloc   uint64 `json:"total_alloc"`
	Mallocs      uint64 `json:"mallocs"`
	Frees        uint64 `json:"frees"`
	NumGC        uint32 `json:"num_gc"`
	PauseTotalNs uint64 `json:"pause_total_ns"`
	Goroutines   int    `json:"goroutines"`
}

func readMemStats() MemStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return MemStats{
		HeapAlloc:    m.HeapAlloc,
		HeapSys:      m.HeapSys,
		HeapObjects:  m.HeapObjects,
		Sys:          m.Sys,
		TotalAlloc:   m.TotalAlloc,
		Mallocs:      m.Mallocs,
		Frees:        m.Frees,
		NumGC:        m.NumGC,
		PauseTotalNs: m.PauseTotalNs,
		Goroutines:   runtime.NumGoroutine(),
	}
}

// stats writes one JSON object: the keys of the stack's stats object at
// the top level (pool, nic, tcpip, ...), plus "uptime_seconds" since boot,
// "go" (runtime memory statistics) and "info".
func stats(w http.ResponseWriter, cfg Config) {
	out := map[string]any{}
	if cfg.Stats != nil {
		raw, err := json.Marshal(cfg.Stats())
		if err != nil {
			http.Error(w, "stats: "+err.Error(), http.StatusInternalServerError)
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) == nil && obj != nil {
			for k, v := range obj {
				out[k] = v
			}
		} else {
			out["stack"] = json.RawMessage(raw)
		}
	}
	out["uptime_seconds"] = time.Since(cfg.Boot).Seconds()
	out["go"] = readMemStats()
	if cfg.Info != nil {
		out["info"] = cfg.Info
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

// goroutines writes every goroutine's stack, as a panic would print them:
// what a stuck connection handler waits on, without a debugger attached.
func goroutines(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= 4<<20 {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(buf)
}
