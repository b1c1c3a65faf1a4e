package main

// The agent waits for every child itself: as PID 1 it must reap orphans too, and a
// Wait4(-1) loop would steal exit statuses from os/exec. So processes are started here
// and their statuses are delivered by pid; unknown pids (orphans) are simply reaped.

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
}

func newReaper() *reaper {
	r := &reaper{waiting: map[int]chan syscall.WaitStatus{}}
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGCHLD)
	go func() {
		for range sig {
			r.reapAll()
		}
	}()
	return r
}

func (r *reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		if ch, ok := r.waiting[pid]; ok {
			ch <- ws
			delete(r.waiting, pid)
		}
		r.mu.Unlock()
	}
}

// start launches a process; the channel receives its wait status exactly once.
// The lock is held across the fork so the reaper cannot see the pid before it is registered.
func (r *reaper) start(path string, argv []string, attr *os.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	p, err := os.StartProcess(path, argv, attr)
	if err != nil {
		r.mu.Unlock()
		return 0, nil, err
	}
	pid := p.Pid // Release resets p.Pid
	ch := make(chan syscall.WaitStatus, 1)
	r.waiting[pid] = ch
	r.mu.Unlock()
	_ = p.Release()
	// A SIGCHLD that arrived before Notify saw this pid would otherwise be lost.
	go r.reapAll()
	return pid, ch, nil
}
