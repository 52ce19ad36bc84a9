! shmpi for Fortran 2008 (+ TS 29113): the hybrid world (point-to-point
! and collectives), node arrays and distributed arrays over the C API
! (shmpi.h), with MPI's conventions.
!
!   use mpi_f08
!   use shmpi
!   type(shmpi_hybrid) :: world
!   call shmpi_hybrid_create(MPI_COMM_WORLD, world)   ! or an integer handle from `use mpi`
!   call shmpi_hybrid_send(world, dest, tag, buf)     ! any type, any rank, contiguous
!   call shmpi_hybrid_recv(world, source, tag, buf, len=nbytes)
!
! Every procedure takes an optional `ierror`, as MPI's do: present, it
! receives the status (SHMPI_OK or a negative SHMPI_E_* code); absent, a
! failure prints the status and the library's message and stops the
! program (`error stop`). Buffers are `type(*), dimension(..)`: any type
! and rank, passed without a copy; they must be contiguous (a strided
! section is SHMPI_E_INVALID). A node array is seen as a Fortran pointer
! array on the shared memory itself (`shmpi_node_array_pointer`), valid
! until `shmpi_node_array_free`. A distributed array's elements are any
! type (`storage_size(x) / 8` bytes each) and its indices 1-based (0 or
! less is SHMPI_E_OUT_OF_BOUNDS); an allreduce takes its element type from
! its arrays (integers of 1-8 bytes, real32, real64).
!
! Built and installed with the C library by scripts/install.sh:
! PREFIX/lib/libshmpi_f.a and this module's .mod under
! `pkg-config --variable=fmoddir shmpi`. Link: -lshmpi_f, then
! `pkg-config --libs shmpi`.
module shmpi
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: error_unit, int32, int64, real32, real64
  use mpi_f08, only: MPI_Comm
  implicit none
  private

  !> A hybrid world (MPI across nodes, shared memory within one).
  type, public :: shmpi_hybrid
    type(c_ptr), private :: ptr = c_null_ptr
  end type shmpi_hybrid

  !> Memory every rank of a node maps, for computing in place.
  type, public :: shmpi_node_array
    type(c_ptr), private :: ptr = c_null_ptr
  end type shmpi_node_array

  !> A distributed array: every element owned by one rank of the world.
  type, public :: shmpi_dsm
    type(c_ptr), private :: ptr = c_null_ptr
  end type shmpi_dsm

  ! The statuses of shmpi.h (c_examples/hybrid_ring.f90 checks each
  ! against the library's own name for it, shmpi_status_name).
  integer, parameter, public :: SHMPI_OK = 0
  integer, parameter, public :: SHMPI_E_NULL = -1
  integer, parameter, public :: SHMPI_E_INVALID = -2
  integer, parameter, public :: SHMPI_E_NOT_FOUND = -3
  integer, parameter, public :: SHMPI_E_EXISTS = -4
  integer, parameter, public :: SHMPI_E_PERMISSION = -5
  integer, parameter, public :: SHMPI_E_NO_SPACE = -6
  integer, parameter, public :: SHMPI_E_CORRUPT = -7
  integer, parameter, public :: SHMPI_E_TIMEOUT = -8
  integer, parameter, public :: SHMPI_E_WOULD_BLOCK = -9
  integer, parameter, public :: SHMPI_E_OWNER_DIED = -10
  integer, parameter, public :: SHMPI_E_NOT_RECOVERABLE = -11
  integer, parameter, public :: SHMPI_E_PEER_DIED = -12
  integer, parameter, public :: SHMPI_E_PEER_GONE = -13
  integer, parameter, public :: SHMPI_E_TOO_LONG = -14
  integer, parameter, public :: SHMPI_E_BUSY = -15
  integer, parameter, public :: SHMPI_E_MPI = -16
  integer, parameter, public :: SHMPI_E_OUT_OF_BOUNDS = -17
  integer, parameter, public :: SHMPI_E_UNSUPPORTED = -18
  integer, parameter, public :: SHMPI_E_OS = -19
  integer, parameter, public :: SHMPI_E_PANIC = -20
  integer, parameter, public :: SHMPI_E_STATE = -21
  integer, parameter, public :: SHMPI_ANY_SOURCE = -1
  integer, parameter, public :: SHMPI_ANY_TAG = -1
  integer, parameter, public :: SHMPI_SUM = 1
  integer, parameter, public :: SHMPI_PROD = 2
  integer, parameter, public :: SHMPI_MIN = 3
  integer, parameter, public :: SHMPI_MAX = 4
  integer, parameter, public :: SHMPI_BAND = 5
  integer, parameter, public :: SHMPI_BOR = 6
  integer, parameter, public :: SHMPI_BXOR = 7
  integer, parameter, public :: SHMPI_DSM_OWNER = 0
  integer, parameter, public :: SHMPI_DSM_RMA = 1

  public :: shmpi_version, shmpi_status_name, shmpi_last_error
  public :: shmpi_hybrid_create, shmpi_hybrid_rank, shmpi_hybrid_is_local
  public :: shmpi_hybrid_send, shmpi_hybrid_recv, shmpi_hybrid_barrier, shmpi_hybrid_free
  public :: shmpi_node_array_create, shmpi_node_array_pointer, shmpi_node_array_part
  public :: shmpi_node_array_barrier, shmpi_node_array_free
  public :: shmpi_hybrid_broadcast, shmpi_hybrid_allreduce, shmpi_hybrid_gather
  public :: shmpi_dsm_create, shmpi_dsm_get, shmpi_dsm_put, shmpi_dsm_fetch_add
  public :: shmpi_dsm_compare_exchange, shmpi_dsm_barrier, shmpi_dsm_shape, shmpi_dsm_free

  !> A hybrid world over a communicator: `type(MPI_Comm)` (mpi_f08) or
  !> an integer handle (`use mpi`). Collective.
  interface shmpi_hybrid_create
    module procedure hybrid_create_f08, hybrid_create_int
  end interface shmpi_hybrid_create

  !> The node array as a 1-D Fortran pointer array of the given kind,
  !> sized to the whole elements it holds: no copy.
  interface shmpi_node_array_pointer
    module procedure node_pointer_real64, node_pointer_real32
    module procedure node_pointer_int64, node_pointer_int32
  end interface shmpi_node_array_pointer

  interface
    integer(c_int) function c_version(major, minor, patch) bind(C, name="shmpi_version")
      import :: c_int
      integer(c_int), intent(out) :: major, minor, patch
    end function c_version
    type(c_ptr) function c_status_str(status) bind(C, name="shmpi_status_str")
      import :: c_ptr, c_int
      integer(c_int), value :: status
    end function c_status_str
    type(c_ptr) function c_last_error() bind(C, name="shmpi_last_error")
      import :: c_ptr
    end function c_last_error
    integer(c_size_t) function c_strlen(s) bind(C, name="strlen")
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
    end function c_strlen
    integer(c_int) function c_hybrid_create(comm, out) bind(C, name="shmpi_hybrid_create")
      import :: c_int, c_ptr
      integer(c_int), value :: comm
      type(c_ptr), intent(out) :: out
    end function c_hybrid_create
    integer(c_int) function c_hybrid_rank(h, rank, size) bind(C, name="shmpi_hybrid_rank")
      import :: c_int, c_ptr
      type(c_ptr), value :: h
      integer(c_int), intent(out) :: rank, size
    end function c_hybrid_rank
    integer(c_int) function c_hybrid_is_local(h, rank, local) bind(C, name="shmpi_hybrid_is_local")
      import :: c_int, c_ptr
      type(c_ptr), value :: h
      integer(c_int), value :: rank
      integer(c_int), intent(out) :: local
    end function c_hybrid_is_local
    integer(c_int) function f_hybrid_send(h, dest, tag, buf) bind(C, name="shmpi_f_hybrid_send")
      import :: c_int, c_ptr
      type(c_ptr), value :: h
      integer(c_int), value :: dest, tag
      type(*), dimension(..), intent(in) :: buf
    end function f_hybrid_send
    integer(c_int) function f_hybrid_recv(h, source, tag, buf, len, from, got_tag) &
        bind(C, name="shmpi_f_hybrid_recv")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: h
      integer(c_int), value :: source, tag
      type(*), dimension(..), intent(inout) :: buf
      integer(c_size_t), intent(out) :: len
      integer(c_int), intent(out) :: from, got_tag
    end function f_hybrid_recv
    integer(c_int) function c_hybrid_barrier(h) bind(C, name="shmpi_hybrid_barrier")
      import :: c_int, c_ptr
      type(c_ptr), value :: h
    end function c_hybrid_barrier
    integer(c_int) function c_hybrid_free(h) bind(C, name="shmpi_hybrid_free")
      import :: c_int, c_ptr
      type(c_ptr), value :: h
    end function c_hybrid_free
    integer(c_int) function c_node_array_create(h, bytes, out) bind(C, name="shmpi_node_array_create")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: h
      integer(c_size_t), value :: bytes
      type(c_ptr), intent(out) :: out
    end function c_node_array_create
    integer(c_int) function c_node_array_ptr(a, ptr, bytes) bind(C, name="shmpi_node_array_ptr")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: a
      type(c_ptr), intent(out) :: ptr
      integer(c_size_t), intent(out) :: bytes
    end function c_node_array_ptr
    integer(c_int) function c_node_array_part(a, unit, offset, bytes, node_rank, node_size) &
        bind(C, name="shmpi_node_array_part")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: a
      integer(c_size_t), value :: unit
      integer(c_size_t), intent(out) :: offset, bytes
      integer(c_int), intent(out) :: node_rank, node_size
    end function c_node_array_part
    integer(c_int) function c_node_array_barrier(a) bind(C, name="shmpi_node_array_barrier")
      import :: c_int, c_ptr
      type(c_ptr), value :: a
    end function c_node_array_barrier
    integer(c_int) function c_node_array_free(a) bind(C, name="shmpi_node_array_free")
      import :: c_int, c_ptr
      type(c_ptr), value :: a
    end function c_node_array_free
    integer(c_int) function f_hybrid_broadcast(h, root, buf) bind(C, name="shmpi_f_hybrid_broadcast")
      import :: c_int, c_ptr
      type(c_ptr), value :: h
      integer(c_int), value :: root
      type(*), dimension(..), intent(inout) :: buf
    end function f_hybrid_broadcast
    integer(c_int) function f_hybrid_allreduce(h, input, output, op) bind(C, name="shmpi_f_hybrid_allreduce")
      import :: c_int, c_ptr
      type(c_ptr), value :: h
      type(*), dimension(..), intent(in) :: input
      type(*), dimension(..), intent(inout) :: output
      integer(c_int), value :: op
    end function f_hybrid_allreduce
    integer(c_int) function f_hybrid_gather(h, root, input, output) bind(C, name="shmpi_f_hybrid_gather")
      import :: c_int, c_ptr
      type(c_ptr), value :: h
      integer(c_int), value :: root
      type(*), dimension(..), intent(in) :: input
      type(*), dimension(..), intent(inout) :: output
    end function f_hybrid_gather
    integer(c_int) function c_dsm_create(h, len, elem_size, backend, out) bind(C, name="shmpi_dsm_create")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: h
      integer(c_size_t), value :: len, elem_size
      integer(c_int), value :: backend
      type(c_ptr), intent(out) :: out
    end function c_dsm_create
    integer(c_int) function f_dsm_get(d, start, buf) bind(C, name="shmpi_f_dsm_get")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: d
      integer(c_size_t), value :: start
      type(*), dimension(..), intent(inout) :: buf
    end function f_dsm_get
    integer(c_int) function f_dsm_put(d, start, buf) bind(C, name="shmpi_f_dsm_put")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: d
      integer(c_size_t), value :: start
      type(*), dimension(..), intent(in) :: buf
    end function f_dsm_put
    integer(c_int) function f_dsm_fetch_add(d, index, addend, previous) bind(C, name="shmpi_f_dsm_fetch_add")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: d
      integer(c_size_t), value :: index
      type(*), dimension(..), intent(in) :: addend
      type(*), dimension(..), intent(inout) :: previous
    end function f_dsm_fetch_add
    integer(c_int) function f_dsm_compare_exchange(d, index, expected, desired, previous, swapped) &
        bind(C, name="shmpi_f_dsm_compare_exchange")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: d
      integer(c_size_t), value :: index
      type(*), dimension(..), intent(in) :: expected, desired
      type(*), dimension(..), intent(inout) :: previous
      integer(c_int), intent(out) :: swapped
    end function f_dsm_compare_exchange
    integer(c_int) function c_dsm_barrier(d) bind(C, name="shmpi_dsm_barrier")
      import :: c_int, c_ptr
      type(c_ptr), value :: d
    end function c_dsm_barrier
    integer(c_int) function c_dsm_len(d, len) bind(C, name="shmpi_dsm_len")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: d
      integer(c_size_t), intent(out) :: len
    end function c_dsm_len
    integer(c_int) function c_dsm_elem_size(d, elem_size) bind(C, name="shmpi_dsm_elem_size")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: d
      integer(c_size_t), intent(out) :: elem_size
    end function c_dsm_elem_size
    integer(c_int) function c_dsm_free(d) bind(C, name="shmpi_dsm_free")
      import :: c_int, c_ptr
      type(c_ptr), value :: d
    end function c_dsm_free
  end interface

contains

  !> A C string as a Fortran string (empty for NULL).
  function from_c(s) result(str)
    type(c_ptr), intent(in) :: s
    character(len=:), allocatable :: str
    character(kind=c_char), pointer :: chars(:)
    integer :: n, i
    if (.not. c_associated(s)) then
      str = ''
      return
    end if
    n = int(c_strlen(s))
    call c_f_pointer(s, chars, [n])
    allocate (character(len=n) :: str)
    do i = 1, n
      str(i:i) = chars(i)
    end do
  end function from_c

  !> The name and meaning of a status, e.g. "SHMPI_E_TOO_LONG: ...".
  function shmpi_status_name(status) result(str)
    integer, intent(in) :: status
    character(len=:), allocatable :: str
    str = from_c(c_status_str(int(status, c_int)))
  end function shmpi_status_name

  !> This thread's last error message.
  function shmpi_last_error() result(str)
    character(len=:), allocatable :: str
    str = from_c(c_last_error())
  end function shmpi_last_error

  !> Ends a call: `ierror` gets the status; without it a failure stops
  !> the program with the status and the library's (or `why`'s) message.
  subroutine finish(status, ierror, why)
    integer(c_int), intent(in) :: status
    integer, optional, intent(out) :: ierror
    character(len=*), optional, intent(in) :: why
    if (present(ierror)) then
      ierror = int(status)
      return
    end if
    if (status == SHMPI_OK) return
    if (present(why)) then
      write (error_unit, '(a, ": ", a)') shmpi_status_name(int(status)), why
    else
      write (error_unit, '(a, ": ", a)') shmpi_status_name(int(status)), shmpi_last_error()
    end if
    error stop 1
  end subroutine finish

  !> The library's version (compare with the module you compiled against).
  subroutine shmpi_version(major, minor, patch, ierror)
    integer, intent(out) :: major, minor, patch
    integer, optional, intent(out) :: ierror
    integer(c_int) :: a, b, c
    call finish(c_version(a, b, c), ierror)
    major = int(a)
    minor = int(b)
    patch = int(c)
  end subroutine shmpi_version

  subroutine hybrid_create_f08(comm, world, ierror)
    type(MPI_Comm), intent(in) :: comm
    type(shmpi_hybrid), intent(out) :: world
    integer, optional, intent(out) :: ierror
    call finish(c_hybrid_create(int(comm%MPI_VAL, c_int), world%ptr), ierror)
  end subroutine hybrid_create_f08

  subroutine hybrid_create_int(comm, world, ierror)
    integer, intent(in) :: comm
    type(shmpi_hybrid), intent(out) :: world
    integer, optional, intent(out) :: ierror
    call finish(c_hybrid_create(int(comm, c_int), world%ptr), ierror)
  end subroutine hybrid_create_int

  !> This rank and the number of ranks.
  subroutine shmpi_hybrid_rank(world, rank, size, ierror)
    type(shmpi_hybrid), intent(in) :: world
    integer, intent(out) :: rank, size
    integer, optional, intent(out) :: ierror
    integer(c_int) :: r, s
    r = -1
    s = 0
    call finish(c_hybrid_rank(world%ptr, r, s), ierror)
    rank = int(r)
    size = int(s)
  end subroutine shmpi_hybrid_rank

  !> Whether `rank` shares this rank's node.
  subroutine shmpi_hybrid_is_local(world, rank, local, ierror)
    type(shmpi_hybrid), intent(in) :: world
    integer, intent(in) :: rank
    logical, intent(out) :: local
    integer, optional, intent(out) :: ierror
    integer(c_int) :: l
    l = 0
    call finish(c_hybrid_is_local(world%ptr, int(rank, c_int), l), ierror)
    local = l /= 0
  end subroutine shmpi_hybrid_is_local

  !> Sends `buf` (all of it, any type and rank, contiguous) to `dest`.
  subroutine shmpi_hybrid_send(world, dest, tag, buf, ierror)
    type(shmpi_hybrid), intent(in) :: world
    integer, intent(in) :: dest, tag
    type(*), dimension(..), intent(in) :: buf
    integer, optional, intent(out) :: ierror
    if (strided(is_contiguous(buf), "shmpi_hybrid_send", ierror)) return
    call finish(f_hybrid_send(world%ptr, int(dest, c_int), int(tag, c_int), buf), ierror)
  end subroutine shmpi_hybrid_send

  !> Receives from `source` (or SHMPI_ANY_SOURCE) with `tag` (or
  !> SHMPI_ANY_TAG) into `buf`; `len` gets the message's bytes, `from` and
  !> `got_tag` its envelope. A message longer than `buf` is
  !> SHMPI_E_TOO_LONG (with `len` set) and is kept for the next receive.
  subroutine shmpi_hybrid_recv(world, source, tag, buf, len, from, got_tag, ierror)
    type(shmpi_hybrid), intent(in) :: world
    integer, intent(in) :: source, tag
    type(*), dimension(..), intent(inout) :: buf
    integer(c_size_t), optional, intent(out) :: len
    integer, optional, intent(out) :: from, got_tag
    integer, optional, intent(out) :: ierror
    integer(c_size_t) :: n
    integer(c_int) :: f, t, status
    if (strided(is_contiguous(buf), "shmpi_hybrid_recv", ierror)) return
    n = 0
    f = -1
    t = -1
    status = f_hybrid_recv(world%ptr, int(source, c_int), int(tag, c_int), buf, n, f, t)
    if (present(len)) len = n
    if (present(from)) from = int(f)
    if (present(got_tag)) got_tag = int(t)
    call finish(status, ierror)
  end subroutine shmpi_hybrid_recv

  !> A barrier of every rank of the world. Collective.
  subroutine shmpi_hybrid_barrier(world, ierror)
    type(shmpi_hybrid), intent(in) :: world
    integer, optional, intent(out) :: ierror
    call finish(c_hybrid_barrier(world%ptr), ierror)
  end subroutine shmpi_hybrid_barrier

  !> Frees the world (collective); MPI stays initialised.
  subroutine shmpi_hybrid_free(world, ierror)
    type(shmpi_hybrid), intent(inout) :: world
    integer, optional, intent(out) :: ierror
    integer(c_int) :: status
    status = c_hybrid_free(world%ptr)
    world%ptr = c_null_ptr
    call finish(status, ierror)
  end subroutine shmpi_hybrid_free

  !> A zeroed node array of `bytes` bytes, mapped by every rank of this
  !> rank's node (collective over the node's ranks).
  subroutine shmpi_node_array_create(world, bytes, array, ierror)
    type(shmpi_hybrid), intent(in) :: world
    integer(c_size_t), intent(in) :: bytes
    type(shmpi_node_array), intent(out) :: array
    integer, optional, intent(out) :: ierror
    call finish(c_node_array_create(world%ptr, bytes, array%ptr), ierror)
  end subroutine shmpi_node_array_create

  !> The array's address and bytes.
  subroutine node_memory(array, base, bytes, ierror)
    type(shmpi_node_array), intent(in) :: array
    type(c_ptr), intent(out) :: base
    integer(c_size_t), intent(out) :: bytes
    integer, optional, intent(out) :: ierror
    base = c_null_ptr
    bytes = 0
    call finish(c_node_array_ptr(array%ptr, base, bytes), ierror)
  end subroutine node_memory

  subroutine node_pointer_real64(array, x, ierror)
    type(shmpi_node_array), intent(in) :: array
    real(real64), pointer, intent(out) :: x(:)
    integer, optional, intent(out) :: ierror
    type(c_ptr) :: base
    integer(c_size_t) :: bytes
    nullify (x)
    call node_memory(array, base, bytes, ierror)
    if (c_associated(base)) call c_f_pointer(base, x, [bytes / 8])
  end subroutine node_pointer_real64

  subroutine node_pointer_real32(array, x, ierror)
    type(shmpi_node_array), intent(in) :: array
    real(real32), pointer, intent(out) :: x(:)
    integer, optional, intent(out) :: ierror
    type(c_ptr) :: base
    integer(c_size_t) :: bytes
    nullify (x)
    call node_memory(array, base, bytes, ierror)
    if (c_associated(base)) call c_f_pointer(base, x, [bytes / 4])
  end subroutine node_pointer_real32

  subroutine node_pointer_int64(array, x, ierror)
    type(shmpi_node_array), intent(in) :: array
    integer(int64), pointer, intent(out) :: x(:)
    integer, optional, intent(out) :: ierror
    type(c_ptr) :: base
    integer(c_size_t) :: bytes
    nullify (x)
    call node_memory(array, base, bytes, ierror)
    if (c_associated(base)) call c_f_pointer(base, x, [bytes / 8])
  end subroutine node_pointer_int64

  subroutine node_pointer_int32(array, x, ierror)
    type(shmpi_node_array), intent(in) :: array
    integer(int32), pointer, intent(out) :: x(:)
    integer, optional, intent(out) :: ierror
    type(c_ptr) :: base
    integer(c_size_t) :: bytes
    nullify (x)
    call node_memory(array, base, bytes, ierror)
    if (c_associated(base)) call c_f_pointer(base, x, [bytes / 4])
  end subroutine node_pointer_int32

  !> This rank's share of the array split evenly among the node's ranks
  !> in whole units of `unit` bytes: 1-based `first` and `last` element
  !> indices (elements of `unit` bytes; last < first for no share), this
  !> rank's rank on the node and the node's rank count.
  subroutine shmpi_node_array_part(array, unit, first, last, node_rank, node_size, ierror)
    type(shmpi_node_array), intent(in) :: array
    integer(c_size_t), intent(in) :: unit
    integer(c_size_t), intent(out) :: first, last
    integer, optional, intent(out) :: node_rank, node_size
    integer, optional, intent(out) :: ierror
    integer(c_size_t) :: offset, bytes
    integer(c_int) :: r, s, status
    offset = 0
    bytes = 0
    r = -1
    s = 0
    status = c_node_array_part(array%ptr, unit, offset, bytes, r, s)
    if (unit > 0) then
      first = offset / unit + 1
      last = (offset + bytes) / unit
    else
      first = 1
      last = 0
    end if
    if (present(node_rank)) node_rank = int(r)
    if (present(node_size)) node_size = int(s)
    call finish(status, ierror)
  end subroutine shmpi_node_array_part

  !> Orders every node rank's writes before it with every read after it
  !> (collective over the node).
  subroutine shmpi_node_array_barrier(array, ierror)
    type(shmpi_node_array), intent(in) :: array
    integer, optional, intent(out) :: ierror
    call finish(c_node_array_barrier(array%ptr), ierror)
  end subroutine shmpi_node_array_barrier

  !> Unmaps the array (its pointers are invalid afterwards). Not collective.
  subroutine shmpi_node_array_free(array, ierror)
    type(shmpi_node_array), intent(inout) :: array
    integer, optional, intent(out) :: ierror
    integer(c_int) :: status
    status = c_node_array_free(array%ptr)
    array%ptr = c_null_ptr
    call finish(status, ierror)
  end subroutine shmpi_node_array_free

  !> Fails with SHMPI_E_INVALID, saying which call's buffer is strided.
  logical function strided(contiguous, what, ierror)
    logical, intent(in) :: contiguous
    character(len=*), intent(in) :: what
    integer, optional, intent(out) :: ierror
    strided = .not. contiguous
    if (strided) call finish(int(SHMPI_E_INVALID, c_int), ierror, what // ": a buffer is not contiguous")
  end function strided

  !> Makes every rank's `buf` equal to rank `root`'s (same size on every
  !> rank). Collective.
  subroutine shmpi_hybrid_broadcast(world, root, buf, ierror)
    type(shmpi_hybrid), intent(in) :: world
    integer, intent(in) :: root
    type(*), dimension(..), intent(inout) :: buf
    integer, optional, intent(out) :: ierror
    if (strided(is_contiguous(buf), "shmpi_hybrid_broadcast", ierror)) return
    call finish(f_hybrid_broadcast(world%ptr, int(root, c_int), buf), ierror)
  end subroutine shmpi_hybrid_broadcast

  !> Combines every rank's `input` element-wise with `op` (SHMPI_SUM ...
  !> SHMPI_BXOR, in rank order); every rank gets the result in `output`.
  !> The element type is the arrays' own: integer of 1, 2, 4 or 8 bytes,
  !> real32 or real64, the same for both, with the same size. Collective.
  subroutine shmpi_hybrid_allreduce(world, input, output, op, ierror)
    type(shmpi_hybrid), intent(in) :: world
    type(*), dimension(..), intent(in) :: input
    type(*), dimension(..), intent(inout) :: output
    integer, intent(in) :: op
    integer, optional, intent(out) :: ierror
    if (strided(is_contiguous(input) .and. is_contiguous(output), "shmpi_hybrid_allreduce", ierror)) return
    call finish(f_hybrid_allreduce(world%ptr, input, output, int(op, c_int)), ierror)
  end subroutine shmpi_hybrid_allreduce

  !> Collects every rank's `input` at rank `root`, in rank order, into
  !> `output` (at the root at least size × input's bytes; ignored
  !> elsewhere). Collective. A smaller `output` at the root is
  !> SHMPI_E_INVALID there, the output untouched, after the gather has
  !> completed for every rank.
  subroutine shmpi_hybrid_gather(world, root, input, output, ierror)
    type(shmpi_hybrid), intent(in) :: world
    integer, intent(in) :: root
    type(*), dimension(..), intent(in) :: input
    type(*), dimension(..), intent(inout) :: output
    integer, optional, intent(out) :: ierror
    if (strided(is_contiguous(input) .and. is_contiguous(output), "shmpi_hybrid_gather", ierror)) return
    call finish(f_hybrid_gather(world%ptr, int(root, c_int), input, output), ierror)
  end subroutine shmpi_hybrid_gather

  !> A zeroed distributed array of `len` elements of `elem_size` bytes
  !> (`storage_size(x) / 8`) over the world's ranks, with backend
  !> SHMPI_DSM_OWNER or SHMPI_DSM_RMA. Collective. The owner protocol
  !> serves only inside calls on the array: meet in shmpi_dsm_barrier
  !> before leaving it for other collectives.
  subroutine shmpi_dsm_create(world, len, elem_size, backend, array, ierror)
    type(shmpi_hybrid), intent(in) :: world
    integer(c_size_t), intent(in) :: len, elem_size
    integer, intent(in) :: backend
    type(shmpi_dsm), intent(out) :: array
    integer, optional, intent(out) :: ierror
    call finish(c_dsm_create(world%ptr, len, elem_size, int(backend, c_int), array%ptr), ierror)
  end subroutine shmpi_dsm_create

  !> Reads elements `first`, `first + 1`, ... (1-based) into `buf`, as many
  !> as it holds (a scalar: one); its bytes must be whole elements.
  subroutine shmpi_dsm_get(array, first, buf, ierror)
    type(shmpi_dsm), intent(in) :: array
    integer(c_size_t), intent(in) :: first
    type(*), dimension(..), intent(inout) :: buf
    integer, optional, intent(out) :: ierror
    if (strided(is_contiguous(buf), "shmpi_dsm_get", ierror)) return
    call finish(f_dsm_get(array%ptr, first - 1, buf), ierror)
  end subroutine shmpi_dsm_get

  !> Writes `buf`'s elements at `first`, `first + 1`, ... (1-based).
  subroutine shmpi_dsm_put(array, first, buf, ierror)
    type(shmpi_dsm), intent(in) :: array
    integer(c_size_t), intent(in) :: first
    type(*), dimension(..), intent(in) :: buf
    integer, optional, intent(out) :: ierror
    if (strided(is_contiguous(buf), "shmpi_dsm_put", ierror)) return
    call finish(f_dsm_put(array%ptr, first - 1, buf), ierror)
  end subroutine shmpi_dsm_put

  !> Adds `addend` to element `index` atomically (integers of 4 or 8
  !> bytes, wrapping); `previous` gets the value it had.
  subroutine shmpi_dsm_fetch_add(array, index, addend, previous, ierror)
    type(shmpi_dsm), intent(in) :: array
    integer(c_size_t), intent(in) :: index
    type(*), dimension(..), intent(in) :: addend
    type(*), dimension(..), intent(inout) :: previous
    integer, optional, intent(out) :: ierror
    call finish(f_dsm_fetch_add(array%ptr, index - 1, addend, previous), ierror)
  end subroutine shmpi_dsm_fetch_add

  !> Sets element `index` to `desired` if it holds `expected`, atomically
  !> (integers of 4 or 8 bytes); `previous` gets the value it held,
  !> `swapped` whether it was replaced.
  subroutine shmpi_dsm_compare_exchange(array, index, expected, desired, previous, swapped, ierror)
    type(shmpi_dsm), intent(in) :: array
    integer(c_size_t), intent(in) :: index
    type(*), dimension(..), intent(in) :: expected, desired
    type(*), dimension(..), intent(inout) :: previous
    logical, intent(out) :: swapped
    integer, optional, intent(out) :: ierror
    integer(c_int) :: s
    s = 0
    call finish(f_dsm_compare_exchange(array%ptr, index - 1, expected, desired, previous, s), ierror)
    swapped = s /= 0
  end subroutine shmpi_dsm_compare_exchange

  !> Waits for every rank; afterwards every read sees every earlier
  !> write. Collective.
  subroutine shmpi_dsm_barrier(array, ierror)
    type(shmpi_dsm), intent(in) :: array
    integer, optional, intent(out) :: ierror
    call finish(c_dsm_barrier(array%ptr), ierror)
  end subroutine shmpi_dsm_barrier

  !> The array's length in elements and their size in bytes.
  subroutine shmpi_dsm_shape(array, len, elem_size, ierror)
    type(shmpi_dsm), intent(in) :: array
    integer(c_size_t), intent(out) :: len, elem_size
    integer, optional, intent(out) :: ierror
    integer(c_int) :: status
    len = 0
    elem_size = 0
    status = c_dsm_len(array%ptr, len)
    if (status == SHMPI_OK) status = c_dsm_elem_size(array%ptr, elem_size)
    call finish(status, ierror)
  end subroutine shmpi_dsm_shape

  !> Frees the array. Collective.
  subroutine shmpi_dsm_free(array, ierror)
    type(shmpi_dsm), intent(inout) :: array
    integer, optional, intent(out) :: ierror
    integer(c_int) :: status
    status = c_dsm_free(array%ptr)
    array%ptr = c_null_ptr
    call finish(status, ierror)
  end subroutine shmpi_dsm_free

end module shmpi
