package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

func report(cfg *config, rs []runResult, load0, load1 string, began time.Time, took time.Duration) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## zzim and Centrifugo %s, one workload, one run (%s mode)\n\n", centrifugoVersion, cfg.mode)
	fmt.Fprintf(&b, "%s UTC on %s (%d cores, %s), %s; load average %s at the start, %s at the end.\n",
		began.UTC().Format("2006-01-02 15:04"), host, machineCores(), runtime.Version(), took.Round(time.Second), load0, load1)
	fmt.Fprintf(&b, "Steps: %s msg/s, each %s warm-up + %s measured; server and dependencies on core %s, load generator on core %s.\n\n",
		joinInts(cfg.rates), cfg.warm, cfg.measure, serverCore, loadCore)

	b.WriteString("| row | U | system | idle server CPU, cores | server CPU µs/msg at 1,000 / 5,000 msg/s | highest rate, p99 < 50 ms | p50 / p99 at 1,000 msg/s | p50 / p99 at 5,000 msg/s | offered / acked / delivered | failed at client | unfinished | acked, not delivered by the drain's end: then by sync / late live | lost after sync | dup |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		if r.err != nil && len(r.steps) == 0 {
			fmt.Fprintf(&b, "| %s | %d | %s | not run: %s | | | | | | | | | | |\n", r.row, r.users, r.system, oneLine(r.err.Error()))
			continue
		}
		offered, acked, failed, delivered, lost, dups, mis := r.totals()
		rc := r.recoveryCounts()
		lostCell := fmt.Sprint(lost)
		if lost > 0 || mis > 0 {
			lostCell = fmt.Sprintf("**%d LOST**", lost)
			if rc.audited && lost > 0 {
				lostCell += fmt.Sprintf(" (%d in the store)", rc.lostInStore)
			}
			if mis > 0 {
				lostCell += fmt.Sprintf(", %d misdelivered", mis)
			}
		}
		if !r.recovery.ran {
			lostCell += " (no sync)"
		}
		unfinished := fmt.Sprint(r.unfinished())
		if r.unfinished() > 0 {
			unfinished = "**" + unfinished + "**"
			if rc.audited {
				unfinished += fmt.Sprintf(" (%d in the store)", rc.unfinishedInStore)
			}
		}
		awaited := fmt.Sprintf("%d: %d / %d", rc.awaited, rc.bySync, rc.latePush)
		best := fmt.Sprint(r.best())
		if r.best() > 0 && r.best() == cfg.rates[len(cfg.rates)-1] {
			best = "≥ " + best
		}
		if r.err != nil {
			best += " (" + oneLine(r.err.Error()) + ")"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s / %s | %s | %s | %s | %d / %d / %d | %d | %s | %s | %s | %d |\n",
			r.row, r.users, r.system, idleCell(&r), cpuCell(&r, 1000), cpuCell(&r, 5000), best, latCell(r.at(1000)), latCell(r.at(5000)),
			offered, acked, delivered, failed, unfinished, awaited, lostCell, dups)
	}
	b.WriteString("\nOnce every step has drained, every recipient fetches what it missed from the server: zzim's clients sync their conversation and ask for their conversation list (what zzim's apps do to recover a lost push), Centrifugo's read their channel's history (its newest 100 publications). \"Acked, not delivered by the drain's end\" counts the acknowledged messages no recipient had when the drain ended, and how many of them the sync then delivered (or a live push, late); \"lost after sync\" counts the acknowledged messages still not delivered after it; for zzim's durable row the benchmark also reads its MariaDB messages table and says how many of those are in the store all the same. Delivered counts every message delivered by the end, the sync's included; latencies count only the live ones.\n")
	b.WriteString(recoveryNotes(rs))
	b.WriteString("\nServer CPU counts the server process and its dependencies (in parentheses: the dependencies' share); the step table below splits it by process. \"Waiting for a core\" is the time the server side's threads were runnable but not running (/proc/PID/task/*/schedstat): on a machine shared with other work, a step with much of it measured the neighbours.\n")
	b.WriteString("\n")
	b.WriteString(ratios(cfg, rs))

	b.WriteString("\n### Every step\n\n")
	b.WriteString("| row | U | system | offered msg/s | delivered msg/s | p50 | p99 | p99 raw | max | server CPU µs/msg (split) | server cores used / waiting for a core | load generator cores | pass |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		for k, s := range append(slices.Clone(r.steps), r.retries...) {
			pass := "yes"
			if !s.pass {
				pass = "no: " + s.why
			}
			if k >= len(r.steps) {
				pass = "first try, run again: " + s.why
			}
			win := max(s.window.Seconds(), 1e-9)
			fmt.Fprintf(&b, "| %s | %d | %s | %d | %.0f | %s | %s | %s | %s | %s | %.2f / %.2f | %.2f | %s |\n",
				r.row, r.users, r.system, s.rate, float64(s.windowDelivered)/max(s.window.Seconds(), 1e-9),
				ms(s.corrected.p50), ms(s.corrected.p99), ms(s.raw.p99), ms(s.corrected.max),
				splitCell(&r, &s), s.serverCPU().Seconds()/win, s.runqWait.Seconds()/win, s.loadCPU.Seconds()/win, pass)
		}
	}
	b.WriteString("\n")
	var notes []string
	for _, r := range rs {
		if r.note != "" {
			n := fmt.Sprintf("- %s %s U=%d: %s; %d users connected in %s", r.system, r.row, r.users, r.note, r.users, r.connect.Round(100*time.Millisecond))
			if r.echoes > 0 {
				n += fmt.Sprintf("; %d echoes (the sender's own publication, delivered to it on the shared channel: not counted)", r.echoes)
			}
			if r.foreign > 0 {
				n += fmt.Sprintf("; %d deliveries not of this run", r.foreign)
			}
			notes = append(notes, n)
		}
	}
	slices.Sort(notes)
	notes = slices.Compact(notes)
	b.WriteString(strings.Join(notes, "\n"))
	b.WriteString("\n")
	return b.String()
}

// cpuCell is the server side's CPU per message at rate, the
// dependencies' share in parentheses.
func cpuCell(r *runResult, rate int) string {
	s := r.at(rate)
	if s == nil || s.windowDelivered == 0 {
		return "-"
	}
	c := fmt.Sprintf("%.1f", s.usPerMsg(s.serverCPU()))
	if len(r.procs) > 1 {
		var deps time.Duration
		for _, p := range r.procs[1:] {
			deps += s.cpu[p]
		}
		c += fmt.Sprintf(" (%.1f)", s.usPerMsg(deps))
	}
	return c
}

func idleCell(r *runResult) string {
	c := fmt.Sprintf("%.3f", r.idleCores())
	if len(r.procs) > 1 {
		var parts []string
		for _, p := range r.procs {
			parts = append(parts, fmt.Sprintf("%s %.3f", p, r.idle[p].Seconds()/max(r.idleFor.Seconds(), 1e-9)))
		}
		c += " (" + strings.Join(parts, " + ") + ")"
	}
	return c
}

// splitCell is the server-side CPU per message, with the dependencies'
// share split out when there are any.
func splitCell(r *runResult, s *stepResult) string {
	total := s.usPerMsg(s.serverCPU())
	if len(r.procs) <= 1 {
		return fmt.Sprintf("%.1f", total)
	}
	var parts []string
	for _, p := range r.procs {
		parts = append(parts, fmt.Sprintf("%s %.1f", p, s.usPerMsg(s.cpu[p])))
	}
	return fmt.Sprintf("%.1f (%s)", total, strings.Join(parts, " + "))
}

func latCell(s *stepResult) string {
	if s == nil || s.corrected.n == 0 {
		return "-"
	}
	c := ms(s.corrected.p50) + " / " + ms(s.corrected.p99)
	if !s.pass {
		c += " (failed)"
	}
	return c
}

// ratios compares zzim with Centrifugo per row and U, against the targets:
// in memory, zzim's CPU per message at most 0.8x and its highest rate at
// least 1.25x Centrifugo's; durable, at least equal.
func ratios(cfg *config, rs []runResult) string {
	var b strings.Builder
	find := func(sys, row string, u int) *runResult {
		for i := range rs {
			if rs[i].system == sys && rs[i].row == row && rs[i].users == u && len(rs[i].steps) > 0 {
				return &rs[i]
			}
		}
		return nil
	}
	for _, row := range cfg.rows {
		for _, u := range cfg.users {
			z, c := find(sysZzim, row, u), find(sysCentrifugo, row, u)
			if z == nil || c == nil {
				continue
			}
			cpuT, rateT := 0.8, 1.25
			if row == rowDurable {
				cpuT, rateT = 1.0, 1.0
			}
			var cpuTexts []string
			for _, rate := range quotedRates {
				zs, cs := z.at(rate), c.at(rate)
				if zs == nil || cs == nil || cs.windowDelivered == 0 || zs.windowDelivered == 0 {
					continue
				}
				ratio := zs.usPerMsg(zs.serverCPU()) / cs.usPerMsg(cs.serverCPU())
				cpuTexts = append(cpuTexts, fmt.Sprintf("%.2fx at %d msg/s", ratio, rate))
			}
			cpuText := "CPU per message zzim/Centrifugo: no common step"
			if len(cpuTexts) > 0 {
				cpuText = fmt.Sprintf("CPU per message zzim/Centrifugo %s (target ≤ %.2fx)", strings.Join(cpuTexts, ", "), cpuT)
			}
			rateText := "highest rate: Centrifugo passed no step"
			if c.best() > 0 {
				ratio := float64(z.best()) / float64(c.best())
				rateText = fmt.Sprintf("highest rate zzim/Centrifugo %.2fx (target ≥ %.2fx: %s)", ratio, rateT, met(ratio >= rateT))
				if z.best() == cfg.rates[len(cfg.rates)-1] || c.best() == cfg.rates[len(cfg.rates)-1] {
					rateText += ", capped by the last step"
				}
			}
			fmt.Fprintf(&b, "- %s, U=%d: %s; %s.\n", row, u, cpuText, rateText)
		}
	}
	return b.String()
}

// machineCores counts the machine's processors (runtime.NumCPU here
// counts only the load generator's own core).
func machineCores() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.NumCPU()
	}
	return strings.Count(string(b), "\nprocessor") + 1
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// recoveryTotals sums the after-run sync's figures over a run's steps.
type recoveryTotals struct {
	awaited, bySync, latePush, recoveredUnacked int64
	audited                                     bool
	lostInStore, unfinishedInStore              int64
}

func (r *runResult) recoveryCounts() recoveryTotals {
	var t recoveryTotals
	for _, s := range append(slices.Clone(r.steps), r.retries...) {
		t.awaited += int64(len(s.awaitedAtDrain))
		t.bySync += s.bySync
		t.latePush += s.latePush
		t.recoveredUnacked += s.recoveredUnacked
		t.audited = t.audited || s.audited
		t.lostInStore += s.lostInStore
		t.unfinishedInStore += s.unfinishedInStore
	}
	return t
}

// recoveryNotes says, per run, how the after-run sync went.
func recoveryNotes(rs []runResult) string {
	var b strings.Builder
	for _, r := range rs {
		if !r.recovery.ran {
			continue
		}
		rc := r.recoveryCounts()
		how := "it ended when " + r.recovery.ended
		if r.recovery.ended == endQuiet {
			how = fmt.Sprintf("it ended when nothing had been answered or delivered for %s", recoverQuiet)
		}
		var lateAnswers int64
		for _, st := range append(slices.Clone(r.steps), r.retries...) {
			lateAnswers += st.track.answersAfterFreeze.Load()
		}
		fmt.Fprintf(&b, "- %s %s U=%d: %d sends unanswered and undelivered when the drain ended, %d after waiting %s for them; the sync then took %s (%s)",
			r.system, r.row, r.users, r.recovery.unansweredAtDrain, r.recovery.unansweredAtSync, r.recovery.settled.Round(100*time.Millisecond),
			(r.recovery.took - r.recovery.settled).Round(100*time.Millisecond), how)
		if lateAnswers > 0 || r.recovery.deliveriesAfterFreeze > 0 {
			fmt.Fprintf(&b, "; after the counts were frozen for the store check, %d answers and %d deliveries came (not counted)", lateAnswers, r.recovery.deliveriesAfterFreeze)
		}
		if rc.awaited > 0 {
			b.WriteString("; " + awaitedTiming(&r))
		}
		if r.recovery.failed > 0 {
			fmt.Fprintf(&b, ", %d history reads failed", r.recovery.failed)
		}
		if rc.recoveredUnacked > 0 {
			fmt.Fprintf(&b, "; it also delivered %d messages whose sends were never acknowledged", rc.recoveredUnacked)
		}
		switch {
		case r.recovery.storeErr != nil:
			fmt.Fprintf(&b, "; the store could not be read: %s", oneLine(r.recovery.storeErr.Error()))
		case rc.audited:
			fmt.Fprintf(&b, "; the messages table then held %d rows", r.recovery.storeRows)
		}
		b.WriteString(".\n")
	}
	return b.String()
}

// awaitedTiming says when the messages awaited at the drain's end were
// acknowledged (before the drain ended) and delivered (after it).
func awaitedTiming(r *runResult) string {
	var acked, came []time.Duration
	for _, s := range append(slices.Clone(r.steps), r.retries...) {
		for _, id := range s.awaitedAtDrain {
			acked = append(acked, time.Duration(r.drainEnd-s.track.ackedAt[id].Load()))
			if at := s.track.deliveredAt[id].Load(); at > 0 {
				came = append(came, time.Duration(at-r.drainEnd))
			}
		}
	}
	span := func(d []time.Duration) string {
		slices.Sort(d)
		return fmt.Sprintf("%s to %s (median %s)", d[0].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), d[len(d)/2].Round(time.Millisecond))
	}
	out := fmt.Sprintf("the %d awaited at the drain's end had been acknowledged %s before it ended", len(acked), span(acked))
	if len(came) > 0 {
		out += fmt.Sprintf(", and %d of them came %s after", len(came), span(came))
	}
	return out
}
