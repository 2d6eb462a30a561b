package node

// Views tracks what a node believes about each role's slots. Until a View
// event arrives for a role, every configured slot is believed alive: a node
// that starts before the registry answers still routes to home slots.
type Views struct {
	slots map[Role]int
	alive map[Role][]bool
}

// NewViews starts with slots[role] slots per role, all believed alive.
func NewViews(slots map[Role]int) *Views {
	v := &Views{slots: map[Role]int{}, alive: map[Role][]bool{}}
	for _, r := range Roles {
		n := slots[r]
		if n <= 0 {
			continue
		}
		v.slots[r] = n
		a := make([]bool, n)
		for i := range a {
			a[i] = true
		}
		v.alive[r] = a
	}
	return v
}

// Update applies a registry view. A view may name more slots than
// configured (scale out): the role grows to it. It returns true if anything
// changed.
func (v *Views) Update(ev View) bool {
	old := v.alive[ev.Role]
	changed := len(old) != len(ev.Alive)
	for i := 0; !changed && i < len(old); i++ {
		changed = old[i] != ev.Alive[i]
	}
	a := make([]bool, len(ev.Alive))
	copy(a, ev.Alive)
	v.alive[ev.Role] = a
	v.slots[ev.Role] = len(a)
	return changed
}

// Alive returns the believed-alive slots of role (index = slot). Callers must not modify it.
func (v *Views) Alive(role Role) []bool { return v.alive[role] }

// MarkDead records locally that a slot failed (link down or timeout) until
// the next view says otherwise.
func (v *Views) MarkDead(a Addr) {
	if s := v.alive[a.Role]; a.Slot < len(s) {
		s[a.Slot] = false
	}
}

// MarkAlive records locally that a slot answered.
func (v *Views) MarkAlive(a Addr) {
	if s := v.alive[a.Role]; a.Slot < len(s) {
		s[a.Slot] = true
	}
}

// Slots is the number of slots of role.
func (v *Views) Slots(role Role) int { return v.slots[role] }
