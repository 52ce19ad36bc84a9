/* A child dies (SIGKILL) holding a robust mutex in a shared segment; the
 * parent's lock reports SHMPI_E_OWNER_DIED, it repairs the guarded value,
 * marks the mutex consistent, and goes on using it. A semaphore tells the
 * parent when the child holds the lock. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

int main(void) {
    char name[64];
    snprintf(name, sizeof name, "c-mutex-%d", (int)getpid());
    shmpi_segment *seg = NULL;
    CHECK(shmpi_segment_create(name, 4096, 0, &seg));
    size_t seg_len = 0;
    CHECK(shmpi_segment_size(seg, &seg_len));
    ASSERT(seg_len == 4096);
    EXPECT(SHMPI_E_NULL, shmpi_segment_size(seg, NULL));
    /* The layout functions a barrier needs too. */
    size_t bar_size = 0, bar_align = 0;
    CHECK(shmpi_barrier_layout(&bar_size, &bar_align));
    ASSERT(bar_size > 0 && (bar_align & (bar_align - 1)) == 0);
    /* Each object at an offset its layout allows: the mutex at 0, the
     * semaphore after it, rounded up to the semaphore's alignment. */
    size_t mutex_size = 0, mutex_align = 0, sem_size = 0, sem_align = 0;
    CHECK(shmpi_mutex_layout(&mutex_size, &mutex_align));
    CHECK(shmpi_semaphore_layout(&sem_size, &sem_align));
    ASSERT(mutex_size > 0 && sem_size > 0 && mutex_align > 0 && sem_align > 0);
    ASSERT((mutex_align & (mutex_align - 1)) == 0 && (sem_align & (sem_align - 1)) == 0);
    size_t sem_at = (mutex_size + sem_align - 1) / sem_align * sem_align;
    ASSERT(sem_at + sem_size <= 4096);
    EXPECT(SHMPI_E_NULL, shmpi_mutex_layout(NULL, &mutex_align));
    EXPECT(SHMPI_E_NULL, shmpi_semaphore_layout(&sem_size, NULL));
    shmpi_mutex *m = NULL;
    shmpi_semaphore *held = NULL;
    CHECK(shmpi_mutex_init(seg, 0, 0, &m));
    CHECK(shmpi_semaphore_init(seg, sem_at, 0, &held));

    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        /* The child opens everything by name, as another program would. */
        shmpi_segment *s = NULL;
        shmpi_mutex *cm = NULL;
        shmpi_semaphore *cs = NULL;
        CHECK(shmpi_segment_open(name, &s));
        CHECK(shmpi_mutex_open(s, 0, &cm));
        CHECK(shmpi_semaphore_open(s, sem_at, &cs));
        CHECK(shmpi_mutex_lock(cm));
        CHECK(shmpi_mutex_set(cm, 41));
        CHECK(shmpi_semaphore_post(cs));
        raise(SIGKILL); /* dies holding the lock */
        return 1;
    }
    CHECK(shmpi_semaphore_wait_timeout(held, 10000));
    int status = 0;
    ASSERT(waitpid(pid, &status, 0) == pid);
    ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    EXPECT(SHMPI_E_OWNER_DIED, shmpi_mutex_lock(m)); /* held now, by us */
    uint64_t value = 0;
    CHECK(shmpi_mutex_get(m, &value));
    ASSERT(value == 41);
    CHECK(shmpi_mutex_set(m, value + 1)); /* the repair */
    CHECK(shmpi_mutex_consistent(m));
    CHECK(shmpi_mutex_unlock(m));
    EXPECT(SHMPI_E_STATE, shmpi_mutex_unlock(m));

    CHECK(shmpi_mutex_lock(m));
    CHECK(shmpi_mutex_get(m, &value));
    ASSERT(value == 42);
    EXPECT(SHMPI_E_STATE, shmpi_mutex_lock(m)); /* already held through m */
    CHECK(shmpi_mutex_unlock(m));

    /* Bad input: a status, never a crash. */
    EXPECT(SHMPI_E_NULL, shmpi_mutex_lock(NULL));
    EXPECT(SHMPI_E_INVALID, shmpi_mutex_init(seg, 4090, 0, &m));
    EXPECT(SHMPI_E_EXISTS, shmpi_segment_create(name, 4096, 0, &seg));
    shmpi_segment *missing = NULL;
    EXPECT(SHMPI_E_NOT_FOUND, shmpi_segment_open("c-mutex-no-such-segment", &missing));
    EXPECT(SHMPI_E_INVALID, shmpi_segment_create("has/slash", 4096, 0, &missing));
    EXPECT(SHMPI_E_INVALID, shmpi_segment_create("c-zero", 0, 0, &missing));

    CHECK(shmpi_semaphore_free(held));
    CHECK(shmpi_mutex_free(m));
    CHECK(shmpi_segment_free(seg)); /* the creator's free removes the name */
    EXPECT(SHMPI_E_NOT_FOUND, shmpi_segment_open(name, &missing));
    printf("mutex_crash: owner killed holding the lock; recovered, repaired, consistent, reused\n");
    return 0;
}
