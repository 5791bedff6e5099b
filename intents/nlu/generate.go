package nlu

//go:generate go run ./gen
