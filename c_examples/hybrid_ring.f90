! A ring over shmpi's hybrid world from Fortran, and a node-shared array
! updated in place. Every rank passes a token (an array of 4 int64) to the
! right and checks what comes from the left; the ranks of each node fill
! their share of one node array of real64, through a Fortran pointer on
! the shared memory, and every rank checks the whole array after the
! node's barrier; the world's collectives and distributed arrays (int64
! counters, 12-byte points) on both backends. Bad input gets its status
! through `ierror`. Run:
!   shmpi mpirun -n 2 hybrid_ring
!   SHMPI_RANKS_PER_NODE=2 shmpi mpirun -n 4 hybrid_ring   (2 emulated nodes)
program hybrid_ring
  use, intrinsic :: iso_c_binding, only: c_float, c_size_t
  use, intrinsic :: iso_fortran_env, only: int64, real64, error_unit
  use mpi_f08
  use shmpi
  implicit none
  integer, parameter :: laps = 100, cells = 1000
  type, bind(C) :: point
    real(c_float) :: x, y, z
  end type point
  type(shmpi_hybrid) :: world, second
  type(shmpi_node_array) :: array
  integer(int64) :: token(4), got(4), small(1)
  real(real64), pointer :: x(:)
  real(real64) :: matrix(8, 3)
  integer(c_size_t) :: len, first, last
  integer :: me, n, right, left, lap, from, tag, ierr, provided
  integer :: node_rank, node_size, major, minor, patch, i
  integer :: owner(cells)
  logical :: local
  ! Collectives and distributed arrays.
  type(shmpi_dsm) :: counters, points
  type(point) :: p
  type(point), allocatable :: all_points(:)
  real(real64) :: grid(4), lowest
  integer :: counts(2), sums(2), backend, k
  integer(int64) :: pair(2), before, seen, totals(8), expected
  integer(int64), allocatable :: gathered(:, :)
  integer(c_size_t) :: elem
  logical :: swapped

  call MPI_Init_thread(MPI_THREAD_MULTIPLE, provided)
  call check(provided == MPI_THREAD_MULTIPLE, "MPI_THREAD_MULTIPLE")
  call shmpi_version(major, minor, patch)
  call check(major >= 0 .and. minor >= 0 .and. patch >= 0, "version")

  call shmpi_hybrid_create(MPI_COMM_WORLD, world)
  call shmpi_hybrid_rank(world, me, n)
  right = modulo(me + 1, n)
  left = modulo(me - 1, n)

  ! The ring: a token of four int64 around and around.
  do lap = 1, laps
    token = [int(lap, int64), int(me, int64), int(lap * 1000 + me, int64), -1_int64]
    call shmpi_hybrid_send(world, right, 7, token)
    got = 0
    call shmpi_hybrid_recv(world, left, 7, got, len=len, from=from, got_tag=tag)
    call check(len == 32 .and. from == left .and. tag == 7, "ring envelope")
    call check(all(got == [int(lap, int64), int(left, int64), int(lap * 1000 + left, int64), -1_int64]), &
               "ring token")
  end do

  ! A matrix column (contiguous section) and a whole 2-D array travel as is.
  matrix = reshape([(real(i, real64), i = 1, 24)], [8, 3])
  call shmpi_hybrid_send(world, right, 8, matrix(:, 2))
  call shmpi_hybrid_send(world, right, 9, matrix)
  matrix = 0
  call shmpi_hybrid_recv(world, left, 8, matrix(:, 3), len=len)
  call check(len == 64 .and. all(nint(matrix(:, 3)) == [(i, i = 9, 16)]), "column")
  call shmpi_hybrid_recv(world, left, 9, matrix, len=len)
  call check(len == 192 .and. nint(matrix(8, 3)) == 24, "matrix")

  ! Too long for the buffer: the status, the length, and the message kept.
  call shmpi_hybrid_send(world, right, 10, token)
  call shmpi_hybrid_recv(world, left, 10, small, len=len, ierror=ierr)
  call check(ierr == SHMPI_E_TOO_LONG .and. len == 32, "too long")
  call shmpi_hybrid_recv(world, left, 10, got, ierror=ierr)
  call check(ierr == SHMPI_OK, "kept message")
  ! A strided section is refused, not copied behind the caller's back.
  call shmpi_hybrid_send(world, right, 11, matrix(1, :), ierror=ierr)
  call check(ierr == SHMPI_E_INVALID, "strided buffer")
  call shmpi_hybrid_send(world, n, 11, token, ierror=ierr)
  call check(ierr == SHMPI_E_INVALID, "rank outside the world")
  call shmpi_hybrid_is_local(world, right, local)
  call shmpi_hybrid_is_local(world, -1, local, ierror=ierr)
  call check(ierr == SHMPI_E_INVALID, "is_local outside the world")
  ! The module's statuses are the library's: each one's name, as the
  ! library spells it.
  call check_name(SHMPI_OK, "SHMPI_OK")
  call check_name(SHMPI_E_NULL, "SHMPI_E_NULL")
  call check_name(SHMPI_E_INVALID, "SHMPI_E_INVALID")
  call check_name(SHMPI_E_NOT_FOUND, "SHMPI_E_NOT_FOUND")
  call check_name(SHMPI_E_EXISTS, "SHMPI_E_EXISTS")
  call check_name(SHMPI_E_PERMISSION, "SHMPI_E_PERMISSION")
  call check_name(SHMPI_E_NO_SPACE, "SHMPI_E_NO_SPACE")
  call check_name(SHMPI_E_CORRUPT, "SHMPI_E_CORRUPT")
  call check_name(SHMPI_E_TIMEOUT, "SHMPI_E_TIMEOUT")
  call check_name(SHMPI_E_WOULD_BLOCK, "SHMPI_E_WOULD_BLOCK")
  call check_name(SHMPI_E_OWNER_DIED, "SHMPI_E_OWNER_DIED")
  call check_name(SHMPI_E_NOT_RECOVERABLE, "SHMPI_E_NOT_RECOVERABLE")
  call check_name(SHMPI_E_PEER_DIED, "SHMPI_E_PEER_DIED")
  call check_name(SHMPI_E_PEER_GONE, "SHMPI_E_PEER_GONE")
  call check_name(SHMPI_E_TOO_LONG, "SHMPI_E_TOO_LONG")
  call check_name(SHMPI_E_BUSY, "SHMPI_E_BUSY")
  call check_name(SHMPI_E_MPI, "SHMPI_E_MPI")
  call check_name(SHMPI_E_OUT_OF_BOUNDS, "SHMPI_E_OUT_OF_BOUNDS")
  call check_name(SHMPI_E_UNSUPPORTED, "SHMPI_E_UNSUPPORTED")
  call check_name(SHMPI_E_OS, "SHMPI_E_OS")
  call check_name(SHMPI_E_PANIC, "SHMPI_E_PANIC")
  call check_name(SHMPI_E_STATE, "SHMPI_E_STATE")
  call check(index(shmpi_status_name(SHMPI_E_STATE - 1), "unknown") == 1, "no status below the last")

  ! A second world from the integer handle of `use mpi`, its own traffic.
  call shmpi_hybrid_create(MPI_COMM_WORLD%MPI_VAL, second)
  call shmpi_hybrid_send(second, right, 7, [42_int64])
  call shmpi_hybrid_recv(second, left, 7, small, len=len)
  call check(len == 8 .and. small(1) == 42, "second world")
  call shmpi_hybrid_free(second)

  ! The world's collectives: the element type is the arrays' own.
  grid = 0
  if (me == 0) grid = [(1.5_real64 * i, i = 1, 4)]
  call shmpi_hybrid_broadcast(world, 0, grid)
  call check(all(grid == [(1.5_real64 * i, i = 1, 4)]), "broadcast")
  counts = [me + 1, -me]
  call shmpi_hybrid_allreduce(world, counts, sums, SHMPI_SUM)
  call check(all(sums == [n * (n + 1) / 2, -(n * (n - 1) / 2)]), "allreduce sum")
  lowest = 10.0_real64 - me
  call shmpi_hybrid_allreduce(world, [lowest], grid(1:1), SHMPI_MIN)
  call check(grid(1) == 10.0_real64 - (n - 1), "allreduce min")
  pair = [int(me, int64), int(100 + me, int64)]
  ! Too little room at the root: only the root can tell; the gather still
  ! completes for everyone and the root alone gets the status.
  allocate (gathered(2, n - 1))
  call shmpi_hybrid_gather(world, n - 1, pair, gathered, ierror=ierr)
  call check(ierr == merge(SHMPI_E_INVALID, SHMPI_OK, me == n - 1), "gather into too little at the root")
  deallocate (gathered)
  allocate (gathered(2, n))
  call shmpi_hybrid_gather(world, n - 1, pair, gathered)
  if (me == n - 1) call check(all(gathered(1, :) == [(int(i, int64), i = 0, n - 1)]) .and. &
                              all(gathered(2, :) == [(int(100 + i, int64), i = 0, n - 1)]), "gather")
  deallocate (gathered)
  call shmpi_hybrid_allreduce(world, counts, grid(1:2), SHMPI_SUM, ierror=ierr)
  call check(ierr == SHMPI_E_INVALID, "allreduce of int32 into real64")
  call shmpi_hybrid_allreduce(world, grid, grid, SHMPI_BAND, ierror=ierr)
  call check(ierr == SHMPI_E_INVALID, "bitwise and of reals")

  ! Distributed arrays, both backends: counters of int64 (fetch-add,
  ! compare-exchange) and points of three real32 (12-byte elements).
  do backend = SHMPI_DSM_OWNER, SHMPI_DSM_RMA
    call shmpi_dsm_create(world, 8_c_size_t, 8_c_size_t, backend, counters)
    call shmpi_dsm_shape(counters, len, elem)
    call check(len == 8 .and. elem == 8, "dsm shape")
    do i = 1, 50
      call shmpi_dsm_fetch_add(counters, int(modulo(i, 8) + 1, c_size_t), 1_int64, before)
    end do
    seen = 0
    do
      call shmpi_dsm_compare_exchange(counters, 8_c_size_t, seen, seen + 100, before, swapped)
      if (swapped) exit
      seen = before
    end do
    call shmpi_dsm_barrier(counters)
    call shmpi_dsm_get(counters, 1_c_size_t, totals)
    do i = 1, 8
      expected = n * count([(modulo(k, 8) + 1 == i, k = 1, 50)])
      if (i == 8) expected = expected + 100 * n
      call check(totals(i) == expected, "dsm counters")
    end do
    call shmpi_dsm_get(counters, 0_c_size_t, before, ierror=ierr)
    call check(ierr == SHMPI_E_OUT_OF_BOUNDS, "index 0")
    call shmpi_dsm_get(counters, 8_c_size_t, totals(1:2), ierror=ierr)
    call check(ierr == SHMPI_E_OUT_OF_BOUNDS, "range past the end")
    call shmpi_dsm_barrier(counters)
    call shmpi_dsm_free(counters)

    call shmpi_dsm_create(world, int(n + 1, c_size_t), int(storage_size(p) / 8, c_size_t), backend, points)
    p = point(real(me), 2.0 * me, -1.0)
    call shmpi_dsm_put(points, int(me + 1, c_size_t), p)
    call shmpi_dsm_barrier(points)
    allocate (all_points(n))
    call shmpi_dsm_get(points, 1_c_size_t, all_points)
    call check(all(all_points%x == [(real(i), i = 0, n - 1)]) .and. all(all_points%z == -1.0), "dsm points")
    deallocate (all_points)
    call shmpi_dsm_fetch_add(points, 1_c_size_t, p, p, ierror=ierr)
    call check(ierr == SHMPI_E_INVALID, "fetch-add on a 12-byte element")
    call shmpi_dsm_put(points, 1_c_size_t, counts, ierror=ierr)
    call check(ierr == SHMPI_E_INVALID, "8 bytes for a 12-byte element")
    call shmpi_dsm_barrier(points)
    call shmpi_dsm_free(points)
  end do

  ! The node array, updated in place: each node rank writes its share.
  call shmpi_node_array_create(world, int(cells * 8, c_size_t), array)
  call shmpi_node_array_pointer(array, x)
  call check(size(x) == cells, "node array size")
  call shmpi_node_array_part(array, 8_c_size_t, first, last, node_rank, node_size)
  do i = int(first), int(last)
    x(i) = real(i, real64) * 0.5_real64 + node_rank
  end do
  call shmpi_node_array_barrier(array)
  ! Every element was written, once, by the node rank whose share holds
  ! it: the shares cover the array in node-rank order, and this rank's
  ! share holds its own mark.
  owner = nint(x - [(real(i, real64) * 0.5_real64, i = 1, cells)])
  call check(all(owner >= 0 .and. owner < node_size), "every element written by a node rank")
  call check(all(owner(2:) >= owner(:cells - 1)), "shares in node-rank order")
  call check(all(owner(first:last) == node_rank) .and. count(owner == node_rank) == last - first + 1, &
             "this rank's share")
  call shmpi_node_array_barrier(array)
  call shmpi_node_array_free(array)

  call shmpi_hybrid_barrier(world)
  call shmpi_hybrid_free(world)
  if (me == 0) write (*, '(a, i0, a, i0, a)') "hybrid_ring: ", n, " ranks, ", node_size, &
    " per node; ring, matrices, too-long, collectives, distributed arrays, node array in place: checked"
  call MPI_Finalize()

contains

  subroutine check_name(status, name)
    integer, intent(in) :: status
    character(len=*), intent(in) :: name
    call check(index(shmpi_status_name(status), name // ":") == 1, "the name of " // name)
  end subroutine check_name

  subroutine check(ok, what)
    logical, intent(in) :: ok
    character(len=*), intent(in) :: what
    if (.not. ok) then
      write (error_unit, '(a, i0, a, a)') "hybrid_ring rank ", me, ": check failed: ", what
      error stop 1
    end if
  end subroutine check
end program hybrid_ring
