/// The SPI1 "user command" engine (ESP32: base 0x3FF42000; S3/C3: 0x60002000, other offsets, see
/// ``SPIRegisterLayout``) through which esptool talks to the flash chip directly: JEDEC id (0x9F),
/// SFDP (0x5A), status registers, reset. Writing CMD with bit 18 (USR) runs the command at once;
/// CMD then reads with bit 18 clear.
struct SPIFlashEngine: Sendable {
    let layout: SPIRegisterLayout
    var regs: [UInt32]
    /// Flash status registers 1–3.
    var status: [UInt8] = [0, 0x02, 0x60]
    var commandsRun = 0

    init(layout: SPIRegisterLayout = .esp32) {
        self.layout = layout
        regs = [UInt32](repeating: 0, count: Int(layout.windowSize / 4))
    }

    func contains(_ address: UInt32) -> Bool { address >= layout.base && address < layout.base + layout.windowSize }

    func read(_ address: UInt32) -> UInt32 {
        let i = Int((address - layout.base) / 4)
        return i < regs.count ? regs[i] : 0
    }

    /// SFDP table: signature "SFDP", revision 1.6, one parameter header (JEDEC basic table at 0x30).
    static let sfdp: [UInt8] = [
        0x53, 0x46, 0x44, 0x50, 0x06, 0x01, 0x00, 0xFF, 0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xFF,
        0x84, 0x00, 0x01, 0x02, 0x80, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ]

    mutating func write(_ address: UInt32, _ value: UInt32, flashID: UInt32, flash: NORFlash) {
        let off = address - layout.base
        let i = Int(off / 4)
        guard i < regs.count else { return }
        if off == layout.cmd, value & (1 << 18) != 0 {
            regs[i] = value & ~(1 << 18)
            execute(flashID: flashID, flash: flash)
        } else {
            regs[i] = value
        }
    }

    private func reg(_ off: UInt32) -> UInt32 { regs[Int(off / 4)] }

    private mutating func execute(flashID: UInt32, flash: NORFlash) {
        commandsRun += 1
        let user = reg(layout.user)
        let command = UInt8(reg(layout.user2) & 0xFF)
        var address: UInt32 = 0
        if user & (1 << 30) != 0 {
            let bits = Int((reg(layout.user1) >> 26) & 0x3F) + 1
            address = bits >= 32 ? reg(layout.addr) : reg(layout.addr) >> UInt32(32 - bits)
        }
        var mosi: [UInt8] = []
        if user & (1 << 27) != 0 {
            let bytes = (Int(reg(layout.mosiDlen) & 0x7FF) + 8) / 8
            for k in 0..<min(bytes, 64) { mosi.append(UInt8((reg(layout.w0 + UInt32(k / 4) * 4) >> UInt32(8 * (k % 4))) & 0xFF)) }
        }
        var response: [UInt8] = []
        switch command {
        case 0x9F: response = [UInt8(flashID & 0xFF), UInt8((flashID >> 8) & 0xFF), UInt8((flashID >> 16) & 0xFF)]
        case 0x5A:
            response = (0..<64).map { k in
                let a = Int(address) + k
                return a < Self.sfdp.count ? Self.sfdp[a] : 0xFF
            }
        case 0x05: response = [status[0]]
        case 0x35: response = [status[1]]
        case 0x15: response = [status[2]]
        case 0x06: status[0] |= 0x02
        case 0x04: status[0] &= ~0x02
        case 0x01:
            if let b = mosi.first { status[0] = b & 0xFC }
            if mosi.count > 1 { status[1] = mosi[1] }
            status[0] &= ~0x02
        case 0x31: if let b = mosi.first { status[1] = b }; status[0] &= ~0x02
        case 0x11: if let b = mosi.first { status[2] = b }; status[0] &= ~0x02
        case 0x03, 0x0B:
            response = flash.read(Int(address), 64) ?? [UInt8](repeating: 0xFF, count: 64)
        default: break // 0x50, 0x66, 0x99, 0xAB, 0xB9, 0x79, 0xFF …: accepted, nothing to report
        }
        if user & (1 << 28) != 0 {
            let bits = Int(reg(layout.misoDlen) & 0x7FF) + 1
            for k in 0..<16 where k * 32 < bits {
                var word: UInt32 = 0
                for j in 0..<4 {
                    let byteIndex = k * 4 + j
                    let firstBit = byteIndex * 8
                    guard firstBit < bits else { break }
                    var b = UInt32(byteIndex < response.count ? response[byteIndex] : 0xFF)
                    let valid = bits - firstBit
                    if valid < 8 { b &= (1 << UInt32(valid)) - 1 }
                    word |= b << UInt32(8 * j)
                }
                regs[Int((layout.w0 / 4)) + k] = word
            }
        }
    }
}
