// Package deptest holds only the test that enforces DESIGN.md's package
// layering and package documentation; it has no code of its own.
package deptest
