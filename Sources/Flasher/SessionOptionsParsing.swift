import ESPCore
import Transport

extension SessionOptions {
    /// `--before`: default-reset (DTR/RTS), usb-reset (USB-Serial-JTAG) or no-reset.
    public static func resetMode(_ text: String) throws -> ResetMode {
        guard let mode = ResetMode.parse(text) else {
            throw UsageError("--before '\(text)' is not a reset mode", hint: "use default-reset, usb-reset or no-reset")
        }
        return mode
    }

    /// `--baud`, checked against what the ESP32 UART can do (300…5000000).
    public static func checkBaud(_ baud: Int) throws {
        guard baud >= 300, baud <= 5_000_000 else {
            throw UsageError("--baud \(baud) is out of range", hint: "the ESP32 UART runs from 300 to 5000000 baud")
        }
    }

    /// Session options as a command line gives them (each value checked; the stub is left unset).
    public static func parse(baud: Int, before: String, after: String, timeout: Double) throws -> SessionOptions {
        let b = try resetMode(before)
        guard let a = AfterMode.parse(after) else {
            throw UsageError("--after '\(after)' is not known", hint: "use hard-reset or no-reset")
        }
        try checkBaud(baud)
        guard timeout > 0, timeout <= 600 else { throw UsageError("--timeout must be between 0 and 600 seconds") }
        var o = SessionOptions()
        (o.baud, o.before, o.after, o.timeout) = (baud, b, a, timeout)
        return o
    }
}
