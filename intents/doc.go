// Package intents owns `robonet ask`: turning a sentence into a Plan (a
// small DAG of scatter/gather steps) with the offline planner (rules for
// the parts of a sentence and the intent classifier of package nlu for its
// verb, asking back when unsure) or an OpenAI-compatible LLM, validating the plan against the command catalogue
// (the catalogue, never the planner, decides what mutates), and running it
// through package mesh.
//
// It does not execute anything a validated plan does not name, does not
// decide trust or approvals (the nodes do), and never sends the API key
// anywhere but the configured endpoint.
package intents
