package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 64 << 10

// User is a user as GET /users/{id} returns it.
type User struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Order is an order as POST /orders takes and returns it.
type Order struct {
	ID       string    `json:"id"`
	UserID   int64     `json:"user_id"`
	Item     string    `json:"item"`
	Quantity int       `json:"quantity"`
	Created  time.Time `json:"created"`
}

// api holds the service's state: a fixed set of users and the orders
// created so far. Its methods are safe for concurrent use.
type api struct {
	logger *slog.Logger // outside a request
	users  map[int64]User

	mu     sync.Mutex
	orders []Order // guarded by mu
}

func newAPI(logger *slog.Logger) *api {
	return &api{
		logger: logger,
		users: map[int64]User{
			1: {ID: 1, Name: "Ada Lovelace"},
			2: {ID: 2, Name: "Alan Turing"},
			3: {ID: 3, Name: "Grace Hopper"},
		},
	}
}

// routes returns the service's routes. Unknown paths get 404 and known
// paths with another method 405, from http.ServeMux.
func (a *api) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc(healthPattern, a.health)
	mux.HandleFunc("GET /users/{id}", a.getUser)
	mux.HandleFunc("POST /orders", a.createOrder)
	return mux
}

// health answers the probes: the process serves requests.
func (a *api) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// getUser answers GET /users/{id}: 200 with the user, 400 for an id that is
// not a positive number, 404 for an unknown user.
func (a *api) getUser(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "id must be a positive integer")
		return
	}
	u, ok := a.users[id]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("user %d not found", id))
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// createOrder answers POST /orders with a JSON body {"user_id", "item",
// "quantity"}: 201 with the order and its Location, 400 for a body that is
// not such JSON, 413 for a body over 64 KiB, 422 for an unknown user, an
// empty item or a quantity outside 1..100.
func (a *api) createOrder(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID   int64  `json:"user_id"`
		Item     string `json:"item"`
		Quantity int    `json:"quantity"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", tooBig.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid JSON: more than one value")
		return
	}
	switch {
	case in.Item == "":
		writeError(w, http.StatusUnprocessableEntity, "item is required")
		return
	case in.Quantity < 1 || in.Quantity > 100:
		writeError(w, http.StatusUnprocessableEntity, "quantity must be between 1 and 100")
		return
	}
	if _, ok := a.users[in.UserID]; !ok {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("user %d not found", in.UserID))
		return
	}

	a.mu.Lock()
	o := Order{
		ID:       fmt.Sprintf("ord-%06d", len(a.orders)+1),
		UserID:   in.UserID,
		Item:     in.Item,
		Quantity: in.Quantity,
		Created:  time.Now().UTC(),
	}
	a.orders = append(a.orders, o)
	a.mu.Unlock()

	// A business event, logged with the request's context: it carries the
	// request's trace_id, span_id and request_id.
	loggerFrom(r.Context(), a.logger).InfoContext(r.Context(), "order created",
		slog.String("order_id", o.ID), slog.Int64("user_id", o.UserID), slog.Int("quantity", o.Quantity))

	w.Header().Set("Location", "/orders/"+o.ID)
	writeJSON(w, http.StatusCreated, o)
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeError answers status with {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
