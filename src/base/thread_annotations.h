// Clang thread-safety annotations (-Wthread-safety; an error in the clang builds) and a mutex
// that carries them: libstdc++'s std::mutex has none, so the analysis cannot see it. With g++
// the macros expand to nothing. Data touched by more than one thread is GUARDED_BY its mutex;
// functions that expect the lock held say REQUIRES.
#pragma once

#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define VGPU_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define VGPU_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) VGPU_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY VGPU_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) VGPU_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) VGPU_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) VGPU_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) VGPU_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) VGPU_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) VGPU_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RETURN_CAPABILITY(x) VGPU_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS VGPU_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace vgpu {

class CAPABILITY("mutex") Mutex {
public:
    void lock() ACQUIRE() { m_mutex.lock(); }
    void unlock() RELEASE() { m_mutex.unlock(); }
    bool try_lock() VGPU_THREAD_ANNOTATION(try_acquire_capability(true))
    {
        return m_mutex.try_lock();
    }

private:
    friend class MutexLock;
    std::mutex m_mutex;
};

// A scoped lock on a Mutex; also what CondVar waits with. unlock()/lock() let a caller drop the
// lock for a stretch (the analysis follows them).
class SCOPED_CAPABILITY MutexLock {
public:
    explicit MutexLock(Mutex& mutex) ACQUIRE(mutex)
        : m_lock(mutex.m_mutex)
    {
    }
    ~MutexLock() RELEASE() { }
    void unlock() RELEASE() { m_lock.unlock(); }
    void lock() ACQUIRE() { m_lock.lock(); }

private:
    friend class CondVar;
    std::unique_lock<std::mutex> m_lock;
};

// A condition variable for Mutex. Waits take the lock explicitly and loop in the caller
// (`while (!ready) cv.wait(lock);`), so the analysis sees the guarded reads under the lock:
// a predicate lambda would be analysed as a function of its own, without it.
class CondVar {
public:
    void wait(MutexLock& lock) { m_cv.wait(lock.m_lock); }
    void notify_one() { m_cv.notify_one(); }
    void notify_all() { m_cv.notify_all(); }

private:
    std::condition_variable m_cv;
};

} // namespace vgpu
