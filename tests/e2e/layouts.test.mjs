// web/layouts.js on its own (pure geometry, no browser): every tile on the
// stage, none overlapping, as large as the stage allows, and pages only when
// tiles would get too small.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bestGrid, gridCapacity, gridRects, focusRegions, stripRects, MAX_PER_PAGE, GAP, minTileWidth } from '../../web/layouts.js';

const STAGES = [{ w: 1264, h: 620 }, { w: 1904, h: 950 }, { w: 374, h: 420 }, { w: 800, h: 300 }];
const inside = (r, a) => r.x >= a.x - 0.01 && r.y >= a.y - 0.01 && r.x + r.w <= a.x + a.w + 0.01 && r.y + r.h <= a.y + a.h + 0.01;
const apart = (a, b) => a.x + a.w + GAP - 0.01 <= b.x || b.x + b.w + GAP - 0.01 <= a.x || a.y + a.h + GAP - 0.01 <= b.y || b.y + b.h + GAP - 0.01 <= a.y;

test('the grid puts every tile on the stage, apart, 16:9, at any count up to a page', () => {
  for (const s of STAGES) {
    const area = { x: 0, y: 0, w: s.w, h: s.h };
    const capacity = gridCapacity(s.w, s.h);
    assert.ok(capacity >= 1 && capacity <= MAX_PER_PAGE);
    for (let n = 1; n <= capacity; n++) {
      const rects = gridRects(n, area);
      assert.equal(rects.length, n);
      for (const [i, r] of rects.entries()) {
        assert.ok(inside(r, area), `${s.w}×${s.h}, ${n} tiles: tile ${i} on the stage`);
        assert.ok(Math.abs(r.w / r.h - 16 / 9) < 0.01);
        for (const o of rects.slice(i + 1)) assert.ok(apart(r, o), `${s.w}×${s.h}, ${n} tiles: tiles apart`);
      }
      assert.ok(rects[0].w >= minTileWidth(s.w) - 0.01, `${s.w}×${s.h}, ${n} tiles: no tile narrower than a page allows`);
    }
    // One more than a page holds would be too small (unless a page is full at 49).
    if (capacity < MAX_PER_PAGE) assert.ok(bestGrid(capacity + 1, s.w, s.h).w < minTileWidth(s.w));
  }
});

test('the grid uses the stage: one tile fills its width or height, and a 1280-wide screen holds 49 at most', () => {
  const one = gridRects(1, { x: 0, y: 0, w: 1264, h: 620 })[0];
  assert.ok(Math.abs(one.h - 620) < 0.01 || Math.abs(one.w - 1264) < 0.01);
  const two = gridRects(2, { x: 0, y: 0, w: 1264, h: 620 });
  assert.ok(two[0].w > 600, 'two side by side, each half the width');
  assert.ok(gridCapacity(1904, 950) <= MAX_PER_PAGE);
  assert.ok(gridCapacity(374, 420) >= 4, 'a phone still shows several people');
});

test('the strip beside a large tile shrinks its tiles before it pages, and stays on the stage', () => {
  for (const s of STAGES) {
    const area = { x: 0, y: 0, w: s.w, h: s.h };
    for (const n of [1, 3, 4, 6, 12, 40]) {
      const regions = focusRegions(area, n);
      assert.ok(regions.capacity >= Math.min(n, focusRegions(area, 1).capacity), 'never fewer than at full size');
      const shown = Math.min(n, regions.capacity);
      const rects = stripRects(shown, regions);
      for (const [i, r] of rects.entries()) {
        assert.ok(inside(r, regions.strip), `${s.w}×${s.h}, ${n}: strip tile ${i} in the strip`);
        assert.ok(apart(r, regions.main), 'strip tiles do not cover the large one');
        for (const o of rects.slice(i + 1)) assert.ok(apart(r, o));
      }
    }
  }
  // At 1280×800, four people beside a shared screen fit without a second page.
  assert.ok(focusRegions({ x: 0, y: 0, w: 1264, h: 560 }, 4).capacity >= 4);
});
