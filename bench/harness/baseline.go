package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// baseline is Rosetta's column of an earlier report (-baseline), to check
// that no scenario got slower.
type baseline struct {
	file string
	us   map[string]float64 // scenario title → Rosetta's µs of CPU per request
}

// readBaseline reads the "Server CPU time per request" table of a report
// this harness wrote.
func readBaseline(file string) (*baseline, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	base := &baseline{file: file, us: map[string]float64{}}
	in, col := false, -1
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "## "):
			in = strings.HasPrefix(l, "## Server CPU time per request")
			continue
		case !in || !strings.HasPrefix(l, "|"):
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(l), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if col < 0 {
			for i, c := range cells {
				if c == peerTitles[peerRosetta] {
					col = i
				}
			}
			continue
		}
		if col >= len(cells) {
			continue
		}
		v, _, _ := strings.Cut(cells[col], " ")
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			base.us[cells[0]] = f
		}
	}
	if len(base.us) == 0 {
		return nil, fmt.Errorf("%s: no Rosetta column in a \"Server CPU time per request\" table", file)
	}
	return base, nil
}

// baselineSection prints Rosetta's CPU per request in this run beside the
// baseline's, for the scenarios both have.
func (r *results) baselineSection(w func(string, ...any)) {
	if r.base == nil {
		return
	}
	w("\n## Rosetta beside the baseline (`%s`)\n\n", r.base.file)
	w("Rosetta's CPU per request (median round) in this run ÷ in the baseline, for each scenario both have. " +
		"These are two runs, so the ratio holds only when both ran on the same quiet machine.\n\n")
	w("| scenario | baseline µs | this run µs | this run ÷ baseline | |\n|---|---:|---:|---:|---|\n")
	slower := 0
	for _, s := range r.scens {
		c := r.cell(s.key, peerRosetta)
		then, ok := r.base.us[s.title]
		if c == nil || c.median() == nil || !ok || then == 0 {
			continue
		}
		now := us(c.median().cpuPerReq())
		verdict := ""
		if now > then {
			verdict, slower = "slower", slower+1
		}
		w("| %s | %.1f | %.1f | %.2f | %s |\n", s.title, then, now, now/then, verdict)
	}
	w("\n- Scenarios slower than the baseline: %d\n", slower)
}
