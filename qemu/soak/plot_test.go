package soak

import (
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func TestTableCSV(t *testing.T) {
	tb := Table{Columns: []string{"t", "heap", "pool"}}
	if err := tb.Add(0, 1.5e6, 256); err != nil {
		t.Fatal(err)
	}
	if err := tb.Add(5, 1.25e6, 260); err != nil {
		t.Fatal(err)
	}
	if err := tb.Add(1, 2); err == nil {
		t.Error("short row accepted")
	}
	var b bytes.Buffer
	if err := tb.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"t", "heap", "pool"}, {"0", "1.5e+06", "256"}, {"5", "1.25e+06", "260"}}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i := range want {
		if strings.Join(recs[i], ",") != strings.Join(want[i], ",") {
			t.Errorf("record %d: %v, want %v", i, recs[i], want[i])
		}
	}
	if got := tb.Column("pool"); len(got) != 2 || got[0] != 256 || got[1] != 260 {
		t.Errorf("Column(pool) = %v", got)
	}
	if tb.Column("nope") != nil {
		t.Error("Column of an unknown name")
	}
}

func TestWriteSVG(t *testing.T) {
	ts := []float64{0, 5, 10, 15}
	panels := []Panel{
		{Title: "heap <live>", Unit: "MiB", Lines: []Line{{Name: "heap", Color: "#1f77b4", V: []float64{1, 2, 2, 3}}}},
		{Title: "pool", Unit: "buffers", Lines: []Line{
			{Name: "in use", Color: "#d62728", V: []float64{256, 300, 280, 256}},
			{Name: "flat", Color: "#2ca02c", V: []float64{0, 0, 0, 0}},
		}},
	}
	var b bytes.Buffer
	if err := WriteSVG(&b, "soak & test", ts, panels); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML with one polyline per line, each with every point.
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	var polylines []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, b.String())
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			for _, a := range se.Attr {
				if a.Name.Local == "points" {
					polylines = append(polylines, a.Value)
				}
			}
		}
	}
	if len(polylines) != 3 {
		t.Fatalf("%d polylines, want 3", len(polylines))
	}
	for i, p := range polylines {
		if n := len(strings.Fields(p)); n != len(ts) {
			t.Errorf("polyline %d has %d points, want %d", i, n, len(ts))
		}
	}
	if err := WriteSVG(io.Discard, "x", ts, []Panel{{Lines: []Line{{V: []float64{1}}}}}); err == nil {
		t.Error("a line shorter than the time axis accepted")
	}
	if err := WriteSVG(io.Discard, "x", nil, nil); err == nil {
		t.Error("empty plot accepted")
	}
}
