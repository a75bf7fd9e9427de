package soak

import (
	"bufio"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
)

// Table is the soak's samples: one row per sample, one column per metric.
type Table struct {
	Columns []string
	Rows    [][]float64
}

// Add appends a row; it must have one value per column.
func (t *Table) Add(row ...float64) error {
	if len(row) != len(t.Columns) {
		return fmt.Errorf("soak: row of %d values for %d columns", len(row), len(t.Columns))
	}
	t.Rows = append(t.Rows, row)
	return nil
}

// Column returns the values of the named column, or nil.
func (t *Table) Column(name string) []float64 {
	for i, c := range t.Columns {
		if c == name {
			out := make([]float64, len(t.Rows))
			for j, r := range t.Rows {
				out[j] = r[i]
			}
			return out
		}
	}
	return nil
}

// WriteCSV writes the table as CSV (RFC 4180): a header line, then one
// line per row.
func (t *Table) WriteCSV(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for i, c := range t.Columns {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString(c)
	}
	bw.WriteByte('\n')
	for _, r := range t.Rows {
		for i, v := range r {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// Line is one curve of a panel.
type Line struct {
	Name  string
	Color string // an SVG color, e.g. "#1f77b4"
	V     []float64
}

// Panel is one chart of the plot: curves against the shared time axis.
type Panel struct {
	Title string
	Unit  string
	Lines []Line
}

// Plot geometry, in SVG user units.
const (
	plotWidth   = 900
	panelHeight = 170
	marginLeft  = 80
	marginRight = 20
	marginTop   = 40
	panelGap    = 50
)

// WriteSVG draws the panels one above the other against the times t
// (seconds), each scaled to its own range, as a standalone SVG document.
func WriteSVG(w io.Writer, title string, t []float64, panels []Panel) error {
	if len(t) == 0 {
		return errors.New("soak: nothing to plot")
	}
	for _, p := range panels {
		for _, l := range p.Lines {
			if len(l.V) != len(t) {
				return fmt.Errorf("soak: %s/%s has %d values for %d times", p.Title, l.Name, len(l.V), len(t))
			}
		}
	}
	bw := bufio.NewWriter(w)
	height := marginTop + len(panels)*(panelHeight+panelGap)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		plotWidth, height, plotWidth, height)
	fmt.Fprintf(bw, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(bw, `<text x="%d" y="22" font-size="15">%s</text>`+"\n", marginLeft, html.EscapeString(title))
	t0, t1 := t[0], t[len(t)-1]
	if t1 <= t0 {
		t1 = t0 + 1
	}
	pw := float64(plotWidth - marginLeft - marginRight)
	x := func(v float64) float64 { return marginLeft + (v-t0)/(t1-t0)*pw }
	for i, p := range panels {
		top := float64(marginTop + i*(panelHeight+panelGap) + 20)
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, l := range p.Lines {
			for _, v := range l.V {
				if !math.IsNaN(v) && !math.IsInf(v, 0) {
					lo, hi = min(lo, v), max(hi, v)
				}
			}
		}
		if lo > hi {
			lo, hi = 0, 1
		}
		lo = min(lo, 0) // every panel starts at zero: growth is seen at scale
		if hi <= lo {
			hi = lo + 1
		}
		y := func(v float64) float64 { return top + panelHeight - (v-lo)/(hi-lo)*panelHeight }
		fmt.Fprintf(bw, `<text x="%d" y="%.0f" font-weight="bold">%s (%s)</text>`+"\n", marginLeft, top-8, html.EscapeString(p.Title), html.EscapeString(p.Unit))
		fmt.Fprintf(bw, `<rect x="%d" y="%.0f" width="%.0f" height="%d" fill="none" stroke="#999"/>`+"\n", marginLeft, top, pw, panelHeight)
		for k := 0; k <= 4; k++ {
			v := lo + (hi-lo)*float64(k)/4
			fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginLeft-6, y(v)+4, label(v))
			if k > 0 && k < 4 {
				fmt.Fprintf(bw, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", marginLeft, marginLeft+pw, y(v), y(v))
			}
		}
		for k := 0; k <= 6; k++ {
			v := t0 + (t1-t0)*float64(k)/6
			fmt.Fprintf(bw, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x(v), top+panelHeight+15, label(v-t0)+"s")
		}
		for _, l := range p.Lines {
			fmt.Fprintf(bw, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="`, l.Color)
			for k, v := range l.V {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					continue
				}
				fmt.Fprintf(bw, "%.1f,%.1f ", x(t[k]), y(v))
			}
			bw.WriteString("\"/>\n")
		}
		// The legend sits above the panel, right-aligned, off the data.
		fmt.Fprintf(bw, `<text x="%.0f" y="%.0f" text-anchor="end">`, marginLeft+pw, top-8)
		for j, l := range p.Lines {
			if j > 0 {
				bw.WriteString(`<tspan fill="#999">&#160;&#160;·&#160;&#160;</tspan>`)
			}
			fmt.Fprintf(bw, `<tspan fill="%s">%s</tspan>`, l.Color, html.EscapeString(l.Name))
		}
		bw.WriteString("</text>\n")
	}
	bw.WriteString("</svg>\n")
	return bw.Flush()
}

// label formats an axis value briefly.
func label(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}
