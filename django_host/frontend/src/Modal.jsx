import { useEffect, useId, useRef } from 'react'

// A dialog over the page: focused when it opens, closed by Escape, its close button or a
// click outside it.
export default function Modal({ title, closeLabel, onClose, children }) {
  const dialog = useRef(null)
  const titleId = useId()

  useEffect(() => {
    dialog.current?.focus()
  }, [])

  return (
    <div className="modal-backdrop" onClick={onClose}>
      <section
        ref={dialog}
        className="modal"
        role="dialog"
        aria-modal="true"
        aria-labelledby={titleId}
        tabIndex={-1}
        onClick={(e) => e.stopPropagation()}
        onKeyDown={(e) => e.key === 'Escape' && onClose()}
      >
        <header className="modal-head">
          <h2 id={titleId}>{title}</h2>
          <button type="button" className="icon-button small" aria-label={closeLabel} onClick={onClose}>
            <svg viewBox="0 0 24 24" aria-hidden="true">
              <path d="M6 6l12 12M18 6L6 18" />
            </svg>
          </button>
        </header>
        {children}
      </section>
    </div>
  )
}
