import { useLayoutEffect, useRef } from 'react'

const MAX_HEIGHT_PX = 200

/** The message input: grows with its content, Enter sends, Shift+Enter adds a line. */
export default function Composer({ value, onChange, onSend, onStop, streaming, stopping, disabled, maxLength }) {
  const textarea = useRef(null)

  useLayoutEffect(() => {
    const element = textarea.current
    if (!element) return
    element.style.height = 'auto'
    element.style.height = `${Math.min(element.scrollHeight, MAX_HEIGHT_PX)}px`
    element.style.overflowY = element.scrollHeight > MAX_HEIGHT_PX ? 'auto' : 'hidden'
  }, [value])

  const canSend = !streaming && !disabled && value.trim().length > 0

  function submit(event) {
    event.preventDefault()
    if (canSend) onSend(value)
  }

  function onKeyDown(event) {
    if (event.key === 'Escape' && streaming) {
      event.preventDefault()
      onStop()
      return
    }
    // isComposing: Enter that confirms an input-method composition is not a send.
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault()
      if (canSend) onSend(value)
    }
  }

  return (
    <form className="composer" onSubmit={submit} aria-label="Send a message">
      <textarea
        ref={textarea}
        rows={1}
        dir="auto"
        aria-label="Message"
        placeholder="Write in Darija, Arabizi or French…"
        value={value}
        maxLength={maxLength}
        onChange={(e) => onChange(e.target.value)}
        onKeyDown={onKeyDown}
        autoFocus
      />
      {streaming ? (
        <button type="button" className="icon-button stop" aria-label="Stop reply" title="Stop (Esc)" onClick={onStop} disabled={stopping}>
          <svg viewBox="0 0 24 24" aria-hidden="true">
            <rect x="6" y="6" width="12" height="12" rx="2" />
          </svg>
        </button>
      ) : (
        <button type="submit" className="icon-button send" aria-label="Send message" disabled={!canSend}>
          <svg viewBox="0 0 24 24" aria-hidden="true">
            <path d="M4 12l16-8-6 16-2.5-6.5z" />
          </svg>
        </button>
      )}
    </form>
  )
}
