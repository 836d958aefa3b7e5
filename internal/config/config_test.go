package config

import (
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	c := Default()
	c.Root = "/tmp/x"
	c.Debug = true
	c.LogFormat = "json"
	c.Rootless = "false"
	got, err := NewFromFlags(c.ToFlags())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, c) {
		t.Fatalf("round trip: got %+v want %+v (flags %q)", *got, c, c.ToFlags())
	}
	d := Default()
	if f := d.ToFlags(); len(f) != 0 {
		t.Fatalf("defaults render flags: %q", f)
	}
}

func TestValidate(t *testing.T) {
	for _, args := range [][]string{
		{"--log-format=xml"},
		{"--rootless=maybe"},
		{"--file-access=magic"},
		{"--nope"},
	} {
		if _, err := NewFromFlags(args); err == nil {
			t.Errorf("%q: expected an error", args)
		}
	}
}
