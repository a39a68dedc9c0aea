package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strings"
)

// The plot is drawn with the standard library alone (image/png and a
// 5×7 bitmap font below), so the harness adds no module to go.mod.

var (
	colWhite = color.RGBA{255, 255, 255, 255}
	colAxis  = color.RGBA{40, 40, 40, 255}
	colGrid  = color.RGBA{225, 225, 225, 255}
	colLine  = color.RGBA{31, 119, 180, 255}
	colKill  = color.RGBA{214, 39, 40, 255}
	colLight = color.RGBA{174, 199, 232, 255}
)

// movingAverage is the mean rate over the last n samples at each sample.
func movingAverage(s []sample, n int) []float64 {
	out := make([]float64, len(s))
	sum := 0.0
	for i := range s {
		sum += s[i].Rate
		if i >= n {
			sum -= s[i-n].Rate
		}
		out[i] = sum / float64(min(i+1, n))
	}
	return out
}

// plotChaos draws tasks/s over time with a red line at each kill.
func plotChaos(path string, s []sample, kills []float64) error {
	if len(s) < 2 {
		return fmt.Errorf("%d samples: nothing to plot", len(s))
	}
	const W, H = 1000, 500
	const left, right, top, bottom = 90, 20, 50, 60
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	fill(img, img.Bounds(), colWhite)
	tMax := s[len(s)-1].At
	yMax := 0.0
	for _, p := range s {
		yMax = math.Max(yMax, p.Rate)
	}
	step := niceStep(yMax / 5)
	yMax = math.Ceil(yMax/step) * step
	if yMax == 0 {
		yMax, step = 1, 1
	}
	px := func(t float64) int { return left + int(t/tMax*float64(W-left-right)) }
	py := func(v float64) int { return H - bottom - int(v/yMax*float64(H-top-bottom)) }
	// Grid and y labels.
	for v := 0.0; v <= yMax+step/2; v += step {
		y := py(v)
		hline(img, left, W-right, y, colGrid)
		label := group(v)
		if v >= 1000 {
			label = group(v/1000) + "k"
		}
		text(img, left-8-textWidth(label, 2), y-7, label, 2, colAxis)
	}
	// x ticks every 2 s.
	for t := 0.0; t <= tMax+0.01; t += 2 {
		x := px(t)
		vline(img, x, H-bottom, H-bottom+6, colAxis)
		l := fmt.Sprint(int(t))
		text(img, x-textWidth(l, 2)/2, H-bottom+10, l, 2, colAxis)
	}
	// Kills.
	for _, k := range kills {
		if k <= tMax {
			x := px(k)
			for y := top; y < H-bottom; y += 8 {
				vline(img, x, y, min(y+4, H-bottom), colKill)
			}
		}
	}
	// Axes.
	hline(img, left, W-right, H-bottom, colAxis)
	vline(img, left, top, H-bottom, colAxis)
	// The series, per sample (light) and as a 1 s moving average (dark).
	for i := 1; i < len(s); i++ {
		line(img, px(s[i-1].At), py(s[i-1].Rate), px(s[i].At), py(s[i].Rate), colLight)
	}
	avg := movingAverage(s, 10)
	for i := 1; i < len(avg); i++ {
		for d := 0; d < 3; d++ {
			line(img, px(s[i-1].At), py(avg[i-1])+d-1, px(s[i].At), py(avg[i])+d-1, colLine)
		}
	}
	text(img, 10, 8, "echo tasks/s, 2 workers, memory store: light per 100 ms, dark 1 s average;", 2, colAxis)
	text(img, 10, 26, "red: kill -9 of a worker", 2, colKill)
	text(img, W/2-textWidth("time (s)", 2)/2, H-22, "time (s)", 2, colAxis)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

// line draws with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else if e2 <= dx {
			e += dx
			y0 += sy
		} else {
			e += dy + dx
			x0 += sx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func textWidth(s string, scale int) int { return len(s) * 6 * scale }

// text draws s with the 5×7 font at (x, y), each dot scale×scale pixels.
func text(img *image.RGBA, x, y int, s string, scale int, c color.RGBA) {
	for i, r := range strings.ToLower(s) {
		g, ok := font5x7[r]
		if !ok {
			g = font5x7['?']
		}
		for row, bits := range g {
			for col, b := range bits {
				if b != '#' {
					continue
				}
				for dy := 0; dy < scale; dy++ {
					for dx := 0; dx < scale; dx++ {
						img.SetRGBA(x+(i*6+col)*scale+dx, y+row*scale+dy, c)
					}
				}
			}
		}
	}
}

var font5x7 = map[rune][7]string{
	' ': {".....", ".....", ".....", ".....", ".....", ".....", "....."},
	'0': {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."},
	'1': {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'2': {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
	'3': {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
	'4': {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
	'5': {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
	'6': {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
	'7': {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
	'8': {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
	'9': {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
	'a': {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"},
	'b': {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."},
	'c': {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."},
	'd': {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"},
	'e': {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."},
	'f': {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."},
	'g': {".....", ".####", "#...#", "#...#", ".####", "....#", ".###."},
	'h': {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'i': {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."},
	'j': {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."},
	'k': {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."},
	'l': {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
	'm': {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"},
	'n': {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
	'o': {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."},
	'p': {".....", ".....", "####.", "#...#", "####.", "#....", "#...."},
	'q': {".....", ".....", ".##.#", "#..##", ".####", "....#", "....#"},
	'r': {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."},
	's': {".....", ".....", ".###.", "#....", ".###.", "....#", "####."},
	't': {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."},
	'u': {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"},
	'v': {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
	'w': {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."},
	'x': {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"},
	'y': {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."},
	'z': {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"},
	'/': {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."},
	'.': {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
	',': {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."},
	';': {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."},
	':': {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
	'-': {".....", ".....", ".....", "#####", ".....", ".....", "....."},
	'(': {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
	')': {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
	'?': {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."},
}
