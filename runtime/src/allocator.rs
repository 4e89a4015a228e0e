//! Hands freed heap pages back to the OS at the few points where much is freed at once.

/// Hands the pages this thread freed (or other threads freed into its heap) back to the OS.
/// mimalloc purges freed pages only on later allocator calls of the same thread, which an
/// idle thread never makes: without this a loader's file buffers and staging copies (a GGUF
/// file's bytes once its matrices are repacked: ~100 MB for SmolLM2) stay resident for as
/// long as the thread that freed them idles.
pub(crate) fn return_freed_memory() {
    // SAFETY: mi_collect takes no pointers and only walks this thread's heap and the
    // abandoned segments; when mimalloc is not the global allocator its heap is empty.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// [`return_freed_memory`] here and, without waiting, on every thread of rayon's global pool:
/// the model loaders repack weights there and wasmtime compiles plugins there.
pub(crate) fn return_freed_memory_everywhere() {
    rayon::spawn_broadcast(|_| return_freed_memory());
    return_freed_memory();
}
