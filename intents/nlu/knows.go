package nlu

// Knows reports whether word (lower case, as Words gives it) is a word
// feature of the model: a word its corpus uses often enough to be kept.
// The planner uses it so that a word of an intent is never taken for the
// name of an unknown node.
func (m *Model) Knows(word string) bool {
	_, ok := m.index["w:"+word]
	return ok
}
