/// The ESP32 ROM loader's compressed-write path (FLASH_DEFL_BEGIN/DATA/END without a stub), as
/// recorded on the real ECO3 ROM (`../shared/golden/qemu-esp32/A-flasher`): the ROM inflates
/// into a 32 KiB window and writes flash in whole windows, so after the last byte of a stream
/// the rest of the final window is written too. Those bytes are whatever the window held from
/// earlier: the same stream one window back, an earlier region of the same session, or zeros
/// after a reset. A region of `n` bytes at `offset` therefore also programs
/// `offset + n ..< offset + roundUp(n, 32 KiB)`.
///
/// The model reproduces the recorded flash files byte for byte (sha256 in `flash-compare.json`:
/// espforge's compressed three-region write, esptool's `--compress --no-stub` write and a single
/// compressed partition-table write). The flasher stub's compressed path writes exactly the
/// stream and is modelled separately (``ProtocolEngine`` in stub mode).
struct ROMDeflateWindow {
    static let size = 0x8000
    private var window = [UInt8](repeating: 0, count: ROMDeflateWindow.size)

    /// Records decompressed `bytes` at stream position `position`.
    mutating func append(_ bytes: [UInt8], at position: Int) {
        var p = position % Self.size
        for b in bytes {
            window[p] = b
            p += 1
            if p == Self.size { p = 0 }
        }
    }

    /// What the ROM writes after a stream of `streamLength` bytes: the rest of the last window.
    func staleTail(streamLength: Int) -> [UInt8] {
        let used = streamLength % Self.size
        guard used != 0 else { return [] }
        return Array(window[used...])
    }
}
