package backbone

import "testing"

func TestEncodeToken(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "_"},
		{"abc-XYZ-09", "abc-XYZ-09"},
		{"a.b", "a_2Eb"},
		{"*", "_2A"},
		{">", "_3E"},
		{"**", "_2A_2A"},
		{"with space", "with_20space"},
		{"tab\t", "tab_09"},
		{"_", "_5F"},
		{"_2E", "_5F2E"},
		{"é", "_C3_A9"},
		{"$SYS", "_24SYS"},
		{"a/b", "a_2Fb"},
	}
	for _, c := range cases {
		got := EncodeToken(c.in)
		if got != c.want {
			t.Errorf("EncodeToken(%q) = %q, want %q", c.in, got, c.want)
		}
		back, err := DecodeToken(got)
		if err != nil || back != c.in {
			t.Errorf("DecodeToken(%q) = %q, %v; want %q", got, back, err, c.in)
		}
	}
}

func TestDecodeTokenRejects(t *testing.T) {
	for _, tok := range []string{"", "a.b", "*", ">", "a b", "_", "__", "_2", "_2e", "_41", "_GG", "a_", "x_2", "é"} {
		if tok == "_" {
			continue // the empty string's encoding
		}
		if got, err := DecodeToken(tok); err == nil {
			t.Errorf("DecodeToken(%q) = %q, want an error", tok, got)
		}
	}
}

func TestChannelSubject(t *testing.T) {
	const prefix = "cometd.c1.ch."
	cases := []struct {
		channel, subject string
		wild             bool
	}{
		{"/a", prefix + "a", false},
		{"/a/b", prefix + "a.b", false},
		{"/a/*", prefix + "a.*", true},
		{"/a/**", prefix + "a.>", true},
		{"/**", prefix + ">", true},
		{"/a.b/c d/e*/f>", prefix + "a_2Eb.c_20d.e_2A.f_3E", false},
		{"/chat/***", prefix + "chat._2A_2A_2A", false},
	}
	for _, c := range cases {
		if got := channelSubject(prefix, c.channel); got != c.subject {
			t.Errorf("channelSubject(%q) = %q, want %q", c.channel, got, c.subject)
		}
		if c.wild {
			continue // a wildcard subject is never a message's subject
		}
		back, err := subjectChannel(prefix, c.subject)
		if err != nil || back != c.channel {
			t.Errorf("subjectChannel(%q) = %q, %v; want %q", c.subject, back, err, c.channel)
		}
	}
	for _, bad := range []string{"other.c1.ch.a", prefix, prefix + "a..b", prefix + "a._", prefix + "a.b_"} {
		if got, err := subjectChannel(prefix, bad); err == nil {
			t.Errorf("subjectChannel(%q) = %q, want an error", bad, got)
		}
	}
}

func TestValidSubjectPrefix(t *testing.T) {
	for p, ok := range map[string]bool{
		"cometd": true, "acme.cometd": true, "a-b_c": true,
		"": false, ".a": false, "a.": false, "a..b": false, "a b": false, "a.*": false, "a.>": false, "é": false,
	} {
		if err := validSubjectPrefix(p); (err == nil) != ok {
			t.Errorf("validSubjectPrefix(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

// checkToken verifies the properties the subject layout relies on.
func checkToken(t *testing.T, s string) string {
	tok := EncodeToken(s)
	if tok == "" || tok == "*" || tok == ">" {
		t.Fatalf("EncodeToken(%q) = %q", s, tok)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; !literal(c) && c != '_' {
			t.Fatalf("EncodeToken(%q) = %q contains %q", s, tok, c)
		}
	}
	back, err := DecodeToken(tok)
	if err != nil || back != s {
		t.Fatalf("round trip of %q: %q → %q, %v", s, tok, back, err)
	}
	return tok
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "*", "**", ">", " ", "_", "_2E", ".", "é", "\x00", "a_2Eb"} {
		f.Add(s, "a.b")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ta, tb := checkToken(t, a), checkToken(t, b)
		if a != b && ta == tb {
			t.Fatalf("distinct segments %q and %q share the token %q", a, b, ta)
		}
	})
}

func FuzzDecodeToken(f *testing.F) {
	for _, s := range []string{"_", "abc", "_2E", "_2e", "__", "a_5F", "_41", "_C3_A9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		s, err := DecodeToken(tok)
		if err != nil {
			return
		}
		if again := EncodeToken(s); again != tok {
			t.Fatalf("DecodeToken(%q) = %q, which encodes to %q: two encodings of one segment", tok, s, again)
		}
	})
}

// FuzzChannelSubject checks that every valid channel maps to a subject that
// decodes back to it, and that two distinct channels never share a subject.
func FuzzChannelSubject(f *testing.F) {
	for _, s := range []string{"/a", "/a/b", "/a.b/c d", "/>x/>", "/é/_2E"} {
		f.Add(s, "/a/b")
	}
	const prefix = "p.c.ch."
	f.Fuzz(func(t *testing.T, a, b string) {
		if validateChannel(a) != nil || validateChannel(b) != nil {
			return
		}
		sa, sb := channelSubject(prefix, a), channelSubject(prefix, b)
		back, err := subjectChannel(prefix, sa)
		if err != nil || back != a {
			t.Fatalf("%q → %q → %q, %v", a, sa, back, err)
		}
		if a != b && sa == sb {
			t.Fatalf("%q and %q share the subject %q", a, b, sa)
		}
	})
}
