package intents

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// ---- stage 1: verbs whose arguments are taken from the sentence ----

func (c *clause) configVerbs() bool {
	namesConfig := func(m match) bool {
		return slices.ContainsFunc(m.words, func(w string) bool {
			return w == "config" || w == "configuration" || w == "setting"
		})
	}
	for _, r := range []struct {
		spec string
		ok   func(match) bool
	}{
		{"config|configuration set #key ?to|= #val", nil},
		{"set|change|update|configure ?the ?config|configuration|setting ?key ?of #key to|=|as #val", nil},
		{"set ?the config|configuration|setting ?key ?of #key #val", nil},
	} {
		if m, ok := c.findWhere(r.spec, r.ok); ok {
			c.use(m.start, m.end)
			c.setVerb("config-set", "config", map[string]string{"op": "set", "key": m.caps[0], "value": m.caps[1]}, m.words...)
			return true
		}
	}
	for _, r := range []struct {
		spec string
		ok   func(match) bool
	}{
		{"config|configuration get #key", nil},
		{"get|show|read|print|fetch|display|what_is ?me ?the ?current config|configuration|setting ?key|value ?of|for #key", nil},
		{"what_is ?the ?value ?of #key set_to|in_the_config|in_config|in_the_configuration", nil},
		{"?the value ?of #key in_the_config|in_config|in_the_configuration", nil},
		{"?the value|setting of #key", func(m match) bool { return namesConfig(m) || slices.Contains(m.words, "value") }},
	} {
		if m, ok := c.findWhere(r.spec, r.ok); ok {
			c.use(m.start, m.end)
			c.setVerb("config-get", "config", map[string]string{"op": "get", "key": m.caps[0]}, m.words...)
			return true
		}
	}
	return false
}

func (c *clause) fileVerbs() bool {
	// put: the node's file goes into rn_files.
	if m, ok := c.find("file put #obj #path"); ok {
		c.use(m.start, m.end)
		c.setVerb("file-put", "file", map[string]string{"op": "put", "name": m.caps[0], "path": m.caps[1]}, m.words...)
		return true
	}
	if m, ok := c.find("file get #obj #path"); ok {
		c.use(m.start, m.end)
		c.setVerb("file-get", "file", map[string]string{"op": "get", "name": m.caps[0], "path": m.caps[1]}, m.words...)
		return true
	}
	if m, ok := c.find("upload|collect|grab|fetch|pull|save|get|backup|back_up|archive|copy|download ?the ?file #path"); ok {
		// "copy /a/b to /c/d on X" names a path twice: not a put.
		if _, twice := c.findAfter(m.end, "to|into #path"); !twice {
			c.use(m.start, m.end)
			name := path.Base(m.caps[0])
			if n, ok := c.take("as|named|called|under_the_name #obj"); ok {
				name = n.caps[0]
			}
			c.setVerb("file-put", "file", map[string]string{"op": "put", "name": name, "path": m.caps[0]}, m.words...)
			return true
		}
	}
	if m, ok := c.find("copy|push|deploy|distribute|send|install|download|write|place|put|roll_out ?the ?file|object #obj to|into|at|as #path"); ok {
		c.use(m.start, m.end)
		args := map[string]any{"op": "get", "name": m.caps[0], "path": m.caps[1]}
		if c.useAll(setOf("overwriting overwrite replacing replace force forcing")) > 0 {
			args["overwrite"] = true
		}
		c.setVerb("file-get", "file", args, m.words...)
		return true
	}
	return false
}

// findAfter matches spec starting at or after index from.
func (c *clause) execVerbs() bool {
	svcAt := -1
	for i, t := range c.toks {
		if !t.used && !t.quoted {
			if _, ok := c.lx.svc[t.low]; ok {
				svcAt = i
				break
			}
		}
	}
	actions := actionWords()
	if svcAt < 0 {
		for _, t := range c.toks {
			if a, ok := actions[t.low]; ok && !t.used {
				c.hint = fmt.Sprintf("%s which service? the rule planner knows: %s", a, strings.Join(KnownServices(), ", "))
				break
			}
		}
		return false
	}
	svc := c.lx.svc[c.toks[svcAt].low]
	// An action word up to three words before the service.
	for i := svcAt - 1; i >= 0 && i >= svcAt-3; i-- {
		if a, ok := actions[c.toks[i].low]; ok && !c.toks[i].used {
			c.toks[i].used, c.toks[svcAt].used = true, true
			c.useAll(setOf("service daemon unit"))
			c.setVerb("exec-service", "exec", map[string][]string{"argv": {"systemctl", a, svc}}, c.toks[i].low, c.toks[svcAt].low)
			return true
		}
	}
	if c.has(setOf("logs log journal journals")) {
		c.toks[svcAt].used = true
		c.useAll(setOf("logs log journal journals service daemon unit recent last latest"))
		c.setVerb("exec-logs", "exec", map[string][]string{"argv": {"journalctl", "-u", svc, "-n", LogLines, "--no-pager"}}, c.toks[svcAt].low, "logs")
		return true
	}
	if c.has(setOf("running active status check up alive working healthy state dead down")) {
		c.toks[svcAt].used = true
		c.useAll(setOf("running active status check up alive working healthy state dead down service daemon unit"))
		c.setVerb("exec-active", "exec", map[string][]string{"argv": {"systemctl", "is-active", svc}}, c.toks[svcAt].low, "running")
		return true
	}
	c.hint = fmt.Sprintf("what should happen to %s? say restart, start, stop, reload, \"is %s running\" or \"%s logs\"", svc, svc, svc)
	return false
}
