package handler

import (
	"reflect"
	"testing"
	"unsafe"
)

// TestStateReset fills every field of a state, resets it and checks that
// each field is as in a new state: slices empty with their capacity kept
// (so that pooling saves the allocations) and, for slices of strings,
// every element up to the capacity cleared (no reference to a caller's
// string stays in the pool). A field added to state without a reset
// fails here.
func TestStateReset(t *testing.T) {
	h, err := newHandler(Config{}, &fakeSink{discard: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &state{}
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		f := settable(v.Field(i))
		switch f.Kind() {
		case reflect.Slice:
			sl := reflect.MakeSlice(f.Type(), 3, 8)
			for j := range sl.Len() {
				fill(sl.Index(j))
			}
			f.Set(sl)
		case reflect.Pointer:
			switch f.Type() {
			case reflect.TypeOf(h):
				f.Set(reflect.ValueOf(h))
			case reflect.TypeOf(h.p):
				f.Set(reflect.ValueOf(h.p))
			default:
				t.Fatalf("field %s: pointer type %s not handled by this test", v.Type().Field(i).Name, f.Type())
			}
		default:
			fill(f)
		}
		if f.IsZero() {
			t.Fatalf("field %s (%s): not filled by this test", v.Type().Field(i).Name, f.Type())
		}
	}
	s.reset()
	for i := range v.NumField() {
		name, f := v.Type().Field(i).Name, v.Field(i)
		if f.Kind() != reflect.Slice {
			if !f.IsZero() {
				t.Errorf("field %s = %v after reset, want its zero value", name, f)
			}
			continue
		}
		if f.Len() != 0 || f.Cap() != 8 {
			t.Errorf("field %s: len %d cap %d after reset, want len 0 and the capacity kept (8)", name, f.Len(), f.Cap())
		}
		if f.Type().Elem().Kind() == reflect.Uint8 {
			continue // bytes refer to nothing
		}
		all := f.Slice(0, f.Cap())
		for j := range all.Len() {
			if !all.Index(j).IsZero() {
				t.Errorf("field %s: element %d = %v after reset, want it cleared", name, j, all.Index(j))
			}
		}
	}
}

// settable returns f (an unexported field) as a value that can be set.
func settable(f reflect.Value) reflect.Value {
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

// fill sets f, and every field within it, to a value that is not zero.
func fill(f reflect.Value) {
	switch f.Kind() {
	case reflect.String:
		f.SetString("x")
	case reflect.Bool:
		f.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		f.SetInt(1)
	case reflect.Uint8, reflect.Uint64, reflect.Uint32, reflect.Uint:
		f.SetUint(1)
	case reflect.Struct:
		for i := range f.NumField() {
			fill(settable(f.Field(i)))
		}
	}
}
