package loadgen

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	colorOffered  = color.RGBA{R: 120, G: 120, B: 120, A: 255}
	colorAchieved = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	colorP50      = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	colorP99      = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	colorDeliver  = color.RGBA{R: 148, G: 103, B: 189, A: 255}
	colorSpike    = color.NRGBA{R: 255, G: 200, B: 0, A: 90}
)

// writePlot draws rate (offered, achieved) and latency (ack p50/p99,
// deliver p99, from the intended time) per second, the spikes shaded.
func writePlot(path string, s *Summary) error {
	rate := plot.New()
	rate.Title.Text = fmt.Sprintf("zzim load: %s (rate per second)", s.Profile)
	rate.X.Label.Text = "seconds"
	rate.Y.Label.Text = "sends/s"
	lat := plot.New()
	lat.Title.Text = "latency from the intended send time"
	lat.X.Label.Text = "seconds"
	lat.Y.Label.Text = "ms"

	var rmax, lmax float64
	series := func(get func(Row) float64, track *float64) plotter.XYs {
		xy := make(plotter.XYs, len(s.Seconds))
		for i, r := range s.Seconds {
			xy[i].X, xy[i].Y = float64(r.T)+0.5, get(r)
			*track = max(*track, xy[i].Y)
		}
		return xy
	}
	lines := []struct {
		p     *plot.Plot
		name  string
		c     color.Color
		get   func(Row) float64
		track *float64
	}{
		{rate, "offered", colorOffered, func(r Row) float64 { return float64(r.Offered) }, &rmax},
		{rate, "achieved (acks)", colorAchieved, func(r Row) float64 { return float64(r.Achieved) }, &rmax},
		{lat, "ack p50", colorP50, func(r Row) float64 { return r.AckP50 }, &lmax},
		{lat, "ack p99", colorP99, func(r Row) float64 { return r.AckP99 }, &lmax},
		{lat, "deliver p99", colorDeliver, func(r Row) float64 { return r.DeliverP99 }, &lmax},
	}
	xys := make([]plotter.XYs, len(lines))
	for i, l := range lines {
		xys[i] = series(l.get, l.track)
	}
	// Spikes first, so the lines are drawn over them.
	for _, pp := range []struct {
		p *plot.Plot
		y float64
	}{{rate, rmax}, {lat, lmax}} {
		for _, w := range s.Windows {
			if w.Multiplier == 0 {
				continue
			}
			if err := shade(pp.p, w, max(pp.y, 1)); err != nil {
				return err
			}
		}
		pp.p.Legend.Top = true
		pp.p.Add(plotter.NewGrid())
	}
	for i, l := range lines {
		ln, err := plotter.NewLine(xys[i])
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		ln.Color = l.c
		ln.Width = vg.Points(1.5)
		l.p.Add(ln)
		l.p.Legend.Add(l.name, ln)
	}
	img := vgimg.New(10*vg.Inch, 8*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadY: vg.Points(10), PadTop: vg.Points(5), PadBottom: vg.Points(5), PadLeft: vg.Points(5), PadRight: vg.Points(5)}
	canvases := plot.Align([][]*plot.Plot{{rate}, {lat}}, tiles, dc)
	rate.Draw(canvases[0][0])
	lat.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot: %w", err)
	}
	return f.Close()
}

// shade marks a spike window across the plot's height.
func shade(p *plot.Plot, w Window, top float64) error {
	poly, err := plotter.NewPolygon(plotter.XYs{{X: w.FromS, Y: 0}, {X: w.ToS, Y: 0}, {X: w.ToS, Y: top}, {X: w.FromS, Y: top}})
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	poly.Color = colorSpike
	poly.LineStyle.Width = 0
	p.Add(poly)
	p.Legend.Add(fmt.Sprintf("%s ×%g", w.Name, w.Multiplier), poly)
	return nil
}
