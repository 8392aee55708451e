import Foundation

/// How to bring the chip into its serial loader before talking (`--before`) and what to do
/// afterwards (`--after`).
public enum ResetMode: String, Sendable, CaseIterable, Codable {
    /// DTR/RTS auto-reset circuit (USB-UART bridges): classic, then the "tight" variant.
    case defaultReset = "default-reset"
    /// The ESP32-S3/C3 built-in USB-Serial-JTAG peripheral's sequence.
    case usbReset = "usb-reset"
    /// Nothing: the chip is already waiting in download mode (manual BOOT+EN, a pty, a socket).
    case noReset = "no-reset"

    public static func parse(_ s: String) -> ResetMode? {
        let k = s.lowercased().replacingOccurrences(of: "_", with: "-")
        if k == "default" { return .defaultReset }
        if k == "usb" { return .usbReset }
        return ResetMode(rawValue: k)
    }
}

public enum AfterMode: String, Sendable, CaseIterable, Codable {
    /// Pulse EN (RTS) so the new firmware boots.
    case hardReset = "hard-reset"
    /// Leave the chip in the loader.
    case noReset = "no-reset"

    public static func parse(_ s: String) -> AfterMode? {
        AfterMode(rawValue: s.lowercased().replacingOccurrences(of: "_", with: "-"))
    }
}

/// The line sequences. DTR drives GPIO0 and RTS drives EN through the usual two-transistor
/// circuit; both are active low (true = line asserted = pin pulled low).
public enum ResetSequence {
    public typealias Sleep = (Double) -> Void

    /// Classic auto-reset: EN low with IO0 high, then IO0 low while EN rises, then release IO0.
    /// `attempt` alternates the boot delay (0.05 s / 0.55 s), as slow boards need the longer one.
    public static func classic(_ port: ChipPort, attempt: Int, sleep: Sleep = { usleep(useconds_t($0 * 1_000_000)) }) throws {
        let delay = attempt % 2 == 0 ? 0.05 : 0.55
        try port.setModemLines(dtr: false, rts: true)
        sleep(0.1)
        try port.setModemLines(dtr: true, rts: false)
        sleep(delay)
        try port.setModemLines(dtr: false, rts: nil)
    }

    /// USB-Serial-JTAG: the peripheral maps DTR/RTS onto its own reset logic; drive both idle,
    /// then IO0 low, then EN pulse with IO0 held, then release.
    public static func usbJTAG(_ port: ChipPort, sleep: Sleep = { usleep(useconds_t($0 * 1_000_000)) }) throws {
        try port.setModemLines(dtr: false, rts: false)
        sleep(0.1)
        try port.setModemLines(dtr: true, rts: false)
        sleep(0.1)
        try port.setModemLines(dtr: false, rts: true)
        try port.setModemLines(dtr: false, rts: true)
        sleep(0.1)
        try port.setModemLines(dtr: false, rts: false)
    }

    /// Hard reset after flashing: EN pulse with IO0 released.
    public static func hardReset(_ port: ChipPort, sleep: Sleep = { usleep(useconds_t($0 * 1_000_000)) }) throws {
        try hardReset(port, usbJTAG: false, sleep: sleep)
    }

    /// The same; `usbJTAG`: a chip on its own USB-Serial-JTAG peripheral (ESP32-S3/C3), which
    /// drops off the bus while in reset: the pulse is held 0.2 s and the port left alone 0.2 s
    /// after it (as esptool 5.6.0 times it).
    public static func hardReset(_ port: ChipPort, usbJTAG: Bool, sleep: Sleep = { usleep(useconds_t($0 * 1_000_000)) }) throws {
        try port.setModemLines(dtr: false, rts: true)
        sleep(usbJTAG ? 0.2 : 0.1)
        try port.setModemLines(dtr: nil, rts: false)
        if usbJTAG { sleep(0.2) }
    }

    /// Applies `mode` before connect attempt `attempt`. Sockets and virtual devices have no
    /// lines: every connection already starts in the ROM loader.
    public static func enterLoader(_ port: ChipPort, mode: ResetMode, attempt: Int) throws {
        guard port.kind == .serial else { return }
        switch mode {
        case .noReset: return
        case .defaultReset: try classic(port, attempt: attempt)
        case .usbReset: try usbJTAG(port)
        }
        port.flushInput()
    }
}
