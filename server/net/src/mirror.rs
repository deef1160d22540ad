//! The hub's copy of what clients see, and areas of interest over it. The
//! mirror applies the world's [`ViewFrame`]s (the agents that changed each
//! tick), keeps each agent's latest view, the tick it last changed, and a
//! grid of cells so an area is found without scanning every agent. An
//! [`Interest`] is one client's area: it answers which agents to put in a
//! snapshot, and each tick which changed, entered and left (far agents at
//! half the rate, as veloren throttles by distance). Pure data: no I/O, no
//! sockets. Touches nothing outside itself.

use hearth_world::view::{AgentView, ViewFrame};

/// Tiles per side of a grid cell.
const CELL: f32 = 16.0;

/// The smallest change of mood clients are told about.
pub const MOOD_STEP: f32 = 0.02;

/// The fields whose changes are tracked, by index.
pub const POSITION: usize = 0;
pub const FACING: usize = 1;
pub const ACTIVITY: usize = 2;
pub const LOCATION: usize = 3;
pub const MOOD: usize = 4;
pub const SPEECH: usize = 5;
const FIELDS: usize = 6;

/// An area of interest, in tiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Area {
    Rect { x: f32, y: f32, w: f32, h: f32 },
    Circle { cx: f32, cy: f32, r: f32 },
}

impl Area {
    fn bounds(&self) -> (f32, f32, f32, f32) {
        match *self {
            Area::Rect { x, y, w, h } => (x, y, x + w, y + h),
            Area::Circle { cx, cy, r } => (cx - r, cy - r, cx + r, cy + r),
        }
    }

    pub fn contains(&self, px: f32, py: f32) -> bool {
        match *self {
            Area::Rect { x, y, w, h } => px >= x && px <= x + w && py >= y && py <= y + h,
            Area::Circle { cx, cy, r } => (px - cx).powi(2) + (py - cy).powi(2) <= r * r,
        }
    }

    /// Far from the centre: beyond half the radius (or half-diagonal).
    fn far(&self, px: f32, py: f32) -> bool {
        let (cx, cy, half) = match *self {
            Area::Rect { x, y, w, h } => (x + w / 2.0, y + h / 2.0, (w * w + h * h).sqrt() / 4.0),
            Area::Circle { cx, cy, r } => (cx, cy, r / 2.0),
        };
        (px - cx).powi(2) + (py - cy).powi(2) > half * half
    }
}

/// The latest view of every agent.
#[derive(Debug, Default)]
pub struct Mirror {
    agents: Vec<Option<AgentView>>,
    /// Tick each agent last changed, and each of its fields.
    changed: Vec<u64>,
    fields: Vec<[u64; FIELDS]>,
    /// Agents by cell; `cell_of[i]` and `slot[i]` say where agent `i` is.
    cells: Vec<Vec<u32>>,
    cols: usize,
    rows: usize,
    cell_of: Vec<usize>,
    slot: Vec<usize>,
    pub tick: u64,
    pub game_seconds: u64,
}

impl Mirror {
    /// A mirror of a `width` × `height` tile map.
    pub fn new(width: u16, height: u16) -> Self {
        let cols = (f32::from(width) / CELL).ceil() as usize + 1;
        let rows = (f32::from(height) / CELL).ceil() as usize + 1;
        Self {
            cells: vec![Vec::new(); cols * rows],
            cols,
            rows,
            ..Self::default()
        }
    }

    /// The map is now `width` × `height` tiles: the grid is laid again and
    /// every agent put in its cell (a map reloaded at another size).
    pub fn resize(&mut self, width: u16, height: u16) {
        self.cols = (f32::from(width) / CELL).ceil() as usize + 1;
        self.rows = (f32::from(height) / CELL).ceil() as usize + 1;
        self.cells = vec![Vec::new(); self.cols * self.rows];
        for i in 0..self.agents.len() {
            self.cell_of[i] = usize::MAX;
            if let Some(v) = self.agents[i] {
                let c = self.cell(v.x, v.y);
                self.slot[i] = self.cells[c].len();
                self.cells[c].push(i as u32);
                self.cell_of[i] = c;
            }
        }
    }

    fn cell(&self, x: f32, y: f32) -> usize {
        let c = ((x.max(0.0) / CELL) as usize).min(self.cols - 1);
        let r = ((y.max(0.0) / CELL) as usize).min(self.rows - 1);
        r * self.cols + c
    }

    /// Applies a frame; returns how many agents changed in a way clients
    /// see (a mood drift under [`MOOD_STEP`] is not a change: the mood last
    /// reported is kept until it is).
    pub fn apply(&mut self, frame: &ViewFrame) -> usize {
        self.tick = frame.tick;
        self.game_seconds = frame.game_seconds;
        let mut count = 0;
        for a in &frame.agents {
            if self.put(*a, frame.tick) {
                count += 1;
            }
        }
        count
    }

    /// Puts one entity's view; whether clients see a change.
    pub fn put(&mut self, a: AgentView, tick: u64) -> bool {
        let i = a.idx as usize;
        if i >= self.agents.len() {
            self.agents.resize(i + 1, None);
            self.changed.resize(i + 1, 0);
            self.fields.resize(i + 1, [0; FIELDS]);
            self.cell_of.resize(i + 1, usize::MAX);
            self.slot.resize(i + 1, 0);
        }
        let x = if a.x.is_finite() { a.x } else { 0.0 };
        let y = if a.y.is_finite() { a.y } else { 0.0 };
        let mut a = AgentView { x, y, ..a };
        let fields = &mut self.fields[i];
        let mut any = false;
        match self.agents[i] {
            Some(before) => {
                let mut mark = |f: usize, changed: bool| {
                    if changed {
                        fields[f] = tick;
                        any = true;
                    }
                };
                mark(POSITION, before.x != a.x || before.y != a.y);
                mark(FACING, before.facing != a.facing);
                mark(
                    ACTIVITY,
                    before.block != a.block || before.reason != a.reason,
                );
                mark(LOCATION, before.location != a.location);
                let mood_moved = (before.mood - a.mood).abs() >= MOOD_STEP || !a.mood.is_finite();
                mark(MOOD, mood_moved);
                if !mood_moved {
                    a.mood = before.mood;
                }
            }
            None => {
                *fields = [tick; FIELDS];
                any = true;
            }
        }
        let cell = self.cell(x, y);
        if self.cell_of[i] != cell {
            self.remove_from_cell(i);
            self.slot[i] = self.cells[cell].len();
            self.cells[cell].push(a.idx);
            self.cell_of[i] = cell;
        }
        self.agents[i] = Some(a);
        if any {
            self.changed[i] = tick;
        }
        any
    }

    /// Marks a field of `idx` changed at `tick` (the hub's own fields, such
    /// as speech).
    pub fn touch(&mut self, idx: u32, field: usize, tick: u64) {
        let i = idx as usize;
        if self.agents.get(i).is_some_and(Option::is_some) {
            self.fields[i][field] = tick;
            self.changed[i] = tick;
        }
    }

    /// Takes `idx` out (a character that left): areas see it leave.
    pub fn remove(&mut self, idx: u32) {
        let i = idx as usize;
        if self.agents.get(i).is_some_and(Option::is_some) {
            self.remove_from_cell(i);
            self.agents[i] = None;
        }
    }

    /// Whether field `field` of `idx` changed after tick `since`.
    pub fn changed_after(&self, idx: u32, field: usize, since: u64) -> bool {
        self.fields
            .get(idx as usize)
            .is_some_and(|f| f[field] > since)
    }

    fn remove_from_cell(&mut self, i: usize) {
        let cell = self.cell_of[i];
        if cell == usize::MAX {
            return;
        }
        let at = self.slot[i];
        let list = &mut self.cells[cell];
        list.swap_remove(at);
        if let Some(&moved) = list.get(at) {
            self.slot[moved as usize] = at;
        }
        self.cell_of[i] = usize::MAX;
    }

    pub fn get(&self, idx: u32) -> Option<&AgentView> {
        self.agents.get(idx as usize).and_then(Option::as_ref)
    }

    pub fn len(&self) -> usize {
        self.agents.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The agents inside `area`, in index order.
    pub fn in_area(&self, area: &Area, out: &mut Vec<u32>) {
        out.clear();
        let (x0, y0, x1, y1) = area.bounds();
        if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
            return;
        }
        let (c0, r0) = (self.cell(x0, y0) % self.cols, self.cell(x0, y0) / self.cols);
        let (c1, r1) = (self.cell(x1, y1) % self.cols, self.cell(x1, y1) / self.cols);
        for r in r0..=r1 {
            for c in c0..=c1 {
                for &i in &self.cells[r * self.cols + c] {
                    if let Some(a) = self.get(i)
                        && area.contains(a.x, a.y)
                    {
                        out.push(i);
                    }
                }
            }
        }
        out.sort_unstable();
    }
}

/// What changed for one client since its last delta.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Visible before and now, and changed: with the tick after which its
    /// changes are news to this client.
    pub changed: Vec<(u32, u64)>,
    pub entered: Vec<u32>,
    pub left: Vec<u32>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.entered.is_empty() && self.left.is_empty()
    }
}

/// One client's area of interest and what it has been sent.
#[derive(Debug)]
pub struct Interest {
    pub area: Area,
    /// Who it was told about, sorted (a merge walk against the area's
    /// sorted members finds who entered and left without hashing).
    visible: Vec<u32>,
    /// Changes after these ticks are not sent yet, near and far.
    near_since: u64,
    far_since: u64,
    scratch: Vec<u32>,
}

impl Interest {
    pub fn new(area: Area) -> Self {
        Self {
            area,
            visible: Vec::new(),
            near_since: 0,
            far_since: 0,
            scratch: Vec::new(),
        }
    }

    /// Everyone in the area now (a snapshot); what follows are deltas from it.
    pub fn snapshot(&mut self, mirror: &Mirror) -> Vec<u32> {
        let mut now = Vec::new();
        mirror.in_area(&self.area, &mut now);
        self.visible = now.clone();
        self.near_since = mirror.tick;
        self.far_since = mirror.tick;
        now
    }

    /// Whether `idx` was in the area at the last snapshot or delta.
    pub fn sees(&self, idx: u32) -> bool {
        self.visible.binary_search(&idx).is_ok()
    }

    /// Who it was told about, sorted.
    pub fn visible(&self) -> &[u32] {
        &self.visible
    }

    /// Moves the area (a player's character walked); the next delta says
    /// who entered and left.
    pub fn move_to(&mut self, area: Area) {
        self.area = area;
    }

    /// What changed since the last delta or snapshot. Agents far from the
    /// area's centre are reported on even ticks only.
    pub fn delta(&mut self, mirror: &Mirror) -> Delta {
        let mut now = std::mem::take(&mut self.scratch);
        mirror.in_area(&self.area, &mut now);
        let far_turn = mirror.tick.is_multiple_of(2);
        let mut d = Delta::default();
        // both lists are sorted: one walk finds who entered and who left
        let mut seen = 0;
        for &i in &now {
            while seen < self.visible.len() && self.visible[seen] < i {
                d.left.push(self.visible[seen]);
                seen += 1;
            }
            if self.visible.get(seen) == Some(&i) {
                seen += 1;
            } else {
                d.entered.push(i);
                continue;
            }
            let Some(a) = mirror.get(i) else {
                continue;
            };
            let since = if self.area.far(a.x, a.y) {
                if !far_turn {
                    continue;
                }
                self.far_since
            } else {
                self.near_since
            };
            if mirror.changed.get(i as usize).is_some_and(|&t| t > since) {
                d.changed.push((i, since));
            }
        }
        d.left.extend_from_slice(&self.visible[seen..]);
        // the old list becomes the next scratch buffer
        std::mem::swap(&mut self.visible, &mut now);
        self.near_since = mirror.tick;
        if far_turn {
            self.far_since = mirror.tick;
        }
        self.scratch = now;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_world::components::Facing;

    fn view(idx: u32, x: f32, y: f32) -> AgentView {
        AgentView {
            idx,
            x,
            y,
            facing: Facing::S,
            block: u16::MAX,
            reason: 2,
            location: 0,
            mood: 0.0,
        }
    }

    fn frame(tick: u64, agents: Vec<AgentView>) -> ViewFrame {
        ViewFrame {
            tick,
            game_seconds: tick * 6,
            agents,
            characters: Vec::new(),
            gone: Vec::new(),
            agents_gone: Vec::new(),
            full: false,
        }
    }

    #[test]
    fn a_resized_grid_finds_every_agent_where_it_is() {
        let mut m = Mirror::new(64, 64);
        let agents: Vec<AgentView> = (0..200)
            .map(|i| view(i, (i * 7 % 64) as f32, (i * 13 % 64) as f32))
            .collect();
        m.apply(&frame(1, agents.clone()));
        m.remove(17);
        // a larger map: the old cells would put far agents in the last one
        m.resize(300, 200);
        m.apply(&frame(2, vec![view(3, 250.0, 180.0)]));
        let everywhere = Area::Rect {
            x: 0.0,
            y: 0.0,
            w: 300.0,
            h: 200.0,
        };
        let mut got = Vec::new();
        m.in_area(&everywhere, &mut got);
        assert_eq!(got.len(), 199, "everyone but the removed one");
        let mut far = Vec::new();
        m.in_area(
            &Area::Circle {
                cx: 250.0,
                cy: 180.0,
                r: 2.0,
            },
            &mut far,
        );
        assert_eq!(far, vec![3]);
    }

    #[test]
    fn areas_find_their_agents_through_the_grid() {
        let mut m = Mirror::new(200, 100);
        let agents: Vec<AgentView> = (0..1000)
            .map(|i| view(i, (i % 200) as f32, (i / 10) as f32 % 100.0))
            .collect();
        m.apply(&frame(1, agents.clone()));
        for area in [
            Area::Rect {
                x: 10.0,
                y: 5.0,
                w: 30.0,
                h: 20.0,
            },
            Area::Circle {
                cx: 100.0,
                cy: 50.0,
                r: 25.0,
            },
            Area::Circle {
                cx: -5.0,
                cy: -5.0,
                r: 400.0,
            },
        ] {
            let mut got = Vec::new();
            m.in_area(&area, &mut got);
            let want: Vec<u32> = agents
                .iter()
                .filter(|a| area.contains(a.x, a.y))
                .map(|a| a.idx)
                .collect();
            assert_eq!(got, want, "{area:?}");
        }
        // agents that move change cells
        m.apply(&frame(2, vec![view(0, 150.0, 90.0), view(5, 150.5, 90.0)]));
        let mut got = Vec::new();
        m.in_area(
            &Area::Circle {
                cx: 150.0,
                cy: 90.0,
                r: 1.0,
            },
            &mut got,
        );
        assert!(got.contains(&0) && got.contains(&5), "{got:?}");
        // non-finite areas find nothing and do not panic
        m.in_area(
            &Area::Circle {
                cx: f32::NAN,
                cy: 0.0,
                r: f32::INFINITY,
            },
            &mut got,
        );
        assert!(got.is_empty());
    }

    #[test]
    fn deltas_say_what_changed_entered_and_left() {
        let mut m = Mirror::new(100, 100);
        m.apply(&frame(
            1,
            vec![
                view(0, 10.0, 10.0),
                view(1, 12.0, 10.0),
                view(2, 80.0, 80.0),
            ],
        ));
        let mut interest = Interest::new(Area::Circle {
            cx: 10.0,
            cy: 10.0,
            r: 10.0,
        });
        assert_eq!(interest.snapshot(&m), vec![0, 1]);
        // tick 2: 0 moves a little, 1 walks out, 2 walks in
        m.apply(&frame(
            2,
            vec![
                view(0, 10.5, 10.0),
                view(1, 40.0, 10.0),
                view(2, 11.0, 11.0),
            ],
        ));
        let d = interest.delta(&m);
        assert_eq!(d.changed, vec![(0, 1)]);
        assert_eq!(d.entered, vec![2]);
        assert_eq!(d.left, vec![1]);
        // nothing happened: an empty delta
        m.apply(&frame(3, vec![]));
        assert!(interest.delta(&m).is_empty());
    }

    #[test]
    fn far_agents_are_reported_every_other_tick() {
        let mut m = Mirror::new(100, 100);
        m.apply(&frame(1, vec![view(0, 50.0, 50.0), view(1, 59.0, 50.0)]));
        let mut interest = Interest::new(Area::Circle {
            cx: 50.0,
            cy: 50.0,
            r: 10.0,
        });
        interest.snapshot(&m);
        // tick 3 (odd): both change; only the near one is reported
        m.apply(&frame(3, vec![view(0, 50.5, 50.0), view(1, 59.5, 50.0)]));
        assert_eq!(interest.delta(&m).changed, vec![(0, 1)]);
        // tick 4 (even): the far one's change is not lost
        m.apply(&frame(4, vec![]));
        assert_eq!(interest.delta(&m).changed, vec![(1, 1)]);
    }
}
