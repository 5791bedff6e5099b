package media

import (
	"strings"
	"testing"
)

func TestParseSDPFrag(t *testing.T) {
	good := "a=ice-options:trickle ice2\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n" +
		"a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n" +
		"a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n" +
		"a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n" +
		"a=end-of-candidates\r\n"
	ufrag, pwd, cands, err := ParseSDPFrag([]byte(good))
	if err != nil || ufrag != "EsAw" || pwd != "P2uYro0UCOQ4zxjKXaWCBui1" || len(cands) != 2 ||
		cands[0] != "candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1" {
		t.Fatalf("ParseSDPFrag(good) = %q %q %q %v", ufrag, pwd, cands, err)
	}
	if _, _, cands, err := ParseSDPFrag([]byte("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\n")); err != nil || len(cands) != 1 {
		t.Errorf("LF-only fragment: %q %v", cands, err)
	}
	bad := map[string]string{
		"not sdp":          "hello world\r\n",
		"short candidate":  "a=candidate:1 1 udp\r\n",
		"no typ":           "a=candidate:1 1 udp 1 127.0.0.1 9 xyz host\r\n",
		"ufrag chars":      "a=ice-ufrag:ab cd\r\n",
		"ufrag short":      "a=ice-ufrag:abc\r\n",
		"pwd short":        "a=ice-pwd:short\r\n",
		"two ufrags":       "a=ice-ufrag:abcd\r\na=ice-ufrag:efgh\r\n",
		"control char":     "a=mid:0\x00\r\n",
		"long line":        "a=candidate:" + strings.Repeat("x", 2000) + "\r\n",
		"too large":        strings.Repeat("a=mid:0\r\n", MaxWHEPBody/9+1),
		"many candidates":  strings.Repeat("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", maxFragCandidates+1),
		"upper-case field": "A=ice-ufrag:abcd\r\n",
	}
	for name, body := range bad {
		if _, _, _, err := ParseSDPFrag([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if err.Error() == "" {
			t.Errorf("%s: empty error", name)
		}
	}
}

func FuzzParseSDPFrag(f *testing.F) {
	for _, s := range []string{
		"",
		"a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\na=end-of-candidates\r\n",
		"a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype active\n",
		"a=ice-ufrag:abcd\na=ice-ufrag:abcd\n",
		"m=\n",
		"a=\n",
		"a=mid:\n",
		"x\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ufrag, pwd, cands, err := ParseSDPFrag(body)
		if err != nil {
			if ufrag != "" || pwd != "" || cands != nil {
				t.Fatalf("an error with results: %q %q %q", ufrag, pwd, cands)
			}
			return
		}
		if len(cands) > maxFragCandidates {
			t.Fatalf("%d candidates", len(cands))
		}
		for _, c := range cands {
			if !strings.HasPrefix(c, "candidate:") || len(c) > maxFragLine || strings.ContainsAny(c, "\r\n") {
				t.Fatalf("candidate %q", c)
			}
		}
		if ufrag != "" && checkICEChars(ufrag, 4, 256) != nil || pwd != "" && checkICEChars(pwd, 22, 256) != nil {
			t.Fatalf("ufrag %q or pwd %q not ice-chars", ufrag, pwd)
		}
		if !strings.Contains(string(body), ufrag) {
			t.Fatalf("ufrag %q is not in the body", ufrag)
		}
	})
}
