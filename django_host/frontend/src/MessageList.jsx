import { useCallback, useLayoutEffect, useRef, useState } from 'react'
import Markdown from './Markdown.jsx'

const NEAR_BOTTOM_PX = 48

export const SUGGESTIONS = ['wach rak khouya?', 'واش هي أحسن أكلة دزيرية؟', 'kifach nta3allem el code?']

function StatusNote({ message }) {
  if (message.status === 'partial') {
    return <p className="status-note">Stopped — this reply is incomplete.</p>
  }
  if (message.status === 'error') {
    return (
      <p className="status-note error" role="alert">
        The reply failed{message.error ? `: ${message.error}` : '.'}
        {message.content ? ' What was written before is kept above.' : ''}
      </p>
    )
  }
  return null
}

// "42 tokens · 28.4 tokens/s": shown under a finished reply while the pointer is over it.
function Figures({ message }) {
  if (message.tokens === null || message.tokens === undefined) return null
  const speed = message.tokens_per_second ? ` · ${message.tokens_per_second.toFixed(1)} tokens/s` : ''
  return (
    <p className="figures" aria-label="Reply figures">
      {message.tokens} tokens{speed}
    </p>
  )
}

// A user message being edited in place: Enter (or Save) sends it again, Escape leaves it.
function EditBox({ message, onSave, onCancel }) {
  const [text, setText] = useState(message.content)
  return (
    <form
      className="edit-box"
      onSubmit={(e) => {
        e.preventDefault()
        onSave(text)
      }}
    >
      <textarea
        dir="auto"
        aria-label="Edit your message"
        value={text}
        autoFocus
        maxLength={16000}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey) {
            e.preventDefault()
            onSave(text)
          } else if (e.key === 'Escape') onCancel()
        }}
      />
      <div className="message-actions">
        <button type="button" className="small" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="primary small" disabled={!text.trim()}>
          Save and send
        </button>
      </div>
    </form>
  )
}

function Message({ message, canRegenerate, onRegenerate, canEdit, onEdit }) {
  const assistant = message.role === 'assistant'
  const streaming = message.status === 'streaming'
  const [editing, setEditing] = useState(false)
  return (
    <article
      className={`message ${message.role}${message.pending ? ' pending' : ''}`}
      data-role={message.role}
      data-status={message.status}
      aria-label={assistant ? 'dziri' : 'You'}
    >
      {assistant ? (
        <>
          {streaming && !message.content ? (
            <div className="bubble typing" aria-label="dziri is writing">
              <span />
              <span />
              <span />
            </div>
          ) : (
            <Markdown className={`bubble markdown${streaming ? ' streaming' : ''}`} text={message.content} />
          )}
          <StatusNote message={message} />
          <Figures message={message} />
          {canRegenerate && (
            <div className="message-actions">
              <button type="button" className="small" aria-label="Regenerate reply" onClick={onRegenerate}>
                ↻ Regenerate
              </button>
            </div>
          )}
        </>
      ) : editing ? (
        <EditBox
          message={message}
          onCancel={() => setEditing(false)}
          onSave={(text) => {
            setEditing(false)
            onEdit(message, text)
          }}
        />
      ) : (
        <>
          <div className="bubble" dir="auto">
            {message.content}
          </div>
          {canEdit && (
            <div className="message-actions user-actions">
              {/* An icon, no text: the message's own text stays what a reader (or a test) reads */}
              <button type="button" className="icon-button small" aria-label="Edit message" title="Edit"
                onClick={() => setEditing(true)}>
                <svg viewBox="0 0 24 24" aria-hidden="true">
                  <path d="M4 20h4L19 9l-4-4L4 16z" />
                </svg>
              </button>
            </div>
          )}
        </>
      )}
    </article>
  )
}

export default function MessageList({
  conversationKey,
  follow,
  messages,
  loading,
  hasMore,
  onLoadEarlier,
  streaming,
  onRegenerate,
  onEdit,
  onSuggestion,
}) {
  const list = useRef(null)
  const stick = useRef(true) // follow the reply unless the user scrolled up
  const restoreFrom = useRef(null) // scrollHeight before older messages were put on top
  // Where the list last put the view, and its height then. Above that spot, in a list of
  // the same height (a resize clamps scrollTop too), means the user moved up, even before
  // their scroll event arrives: tokens can land in between.
  const autoTop = useRef(null)
  const autoHeight = useRef(null)
  const [showJump, setShowJump] = useState(false)

  // Another conversation, or the user just sent a message: follow the bottom again.
  // (Declared before the scrolling effect, so it runs first in the same commit.)
  useLayoutEffect(() => {
    stick.current = true
    autoTop.current = null
    setShowJump(false)
  }, [conversationKey, follow])

  const onScroll = useCallback(() => {
    const element = list.current
    const atBottom = element.scrollHeight - element.scrollTop - element.clientHeight < NEAR_BOTTOM_PX
    stick.current = atBottom
    autoTop.current = atBottom ? element.scrollTop : null
    autoHeight.current = element.clientHeight
    if (atBottom) setShowJump(false)
  }, [])

  // Reading back: stop following at once, without waiting for the scroll event.
  const onWheel = useCallback((event) => {
    if (event.deltaY < 0) stick.current = false
  }, [])
  const onKeyDown = useCallback((event) => {
    if (['ArrowUp', 'PageUp', 'Home'].includes(event.key)) stick.current = false
  }, [])

  useLayoutEffect(() => {
    const element = list.current
    if (!element) return
    if (restoreFrom.current !== null) {
      element.scrollTop += element.scrollHeight - restoreFrom.current
      restoreFrom.current = null
      return
    }
    const movedUp =
      autoTop.current !== null && element.clientHeight === autoHeight.current && element.scrollTop < autoTop.current - 2
    if (movedUp) stick.current = false
    if (stick.current) {
      element.scrollTop = element.scrollHeight
      autoTop.current = element.scrollTop
      autoHeight.current = element.clientHeight
    } else if (streaming) {
      setShowJump(true)
    }
  }, [messages, streaming])

  function jumpToLatest() {
    const element = list.current
    stick.current = true
    setShowJump(false)
    element.scrollTop = element.scrollHeight
    autoTop.current = element.scrollTop
    autoHeight.current = element.clientHeight
  }

  const last = messages[messages.length - 1]
  const lastAssistant = last && last.role === 'assistant' && last.status !== 'streaming' ? last : null
  const unanswered = !streaming && last && last.role === 'user' && !last.pending

  return (
    <div className="messages-wrap">
      <div
        ref={list}
        className="messages"
        role="log"
        aria-label="Messages"
        aria-busy={streaming || loading ? 'true' : 'false'}
        onScroll={onScroll}
        onWheel={onWheel}
        onKeyDown={onKeyDown}
        tabIndex={0}
      >
        <div className="messages-inner">
          {hasMore && (
            <button
              type="button"
              className="link load-earlier"
              disabled={loading}
              onClick={() => {
                restoreFrom.current = list.current.scrollHeight
                onLoadEarlier()
              }}
            >
              Show earlier messages
            </button>
          )}
          {!loading && messages.length === 0 && (
            <div className="welcome">
              <h2 dir="auto">
                Ahlan! <span lang="ar">أهلا</span>
              </h2>
              <p>Talk to dziri in Darija — Arabic script, Arabizi or mixed with French.</p>
              <div className="suggestions">
                {SUGGESTIONS.map((text) => (
                  <button key={text} type="button" className="suggestion" dir="auto" onClick={() => onSuggestion(text)}>
                    {text}
                  </button>
                ))}
              </div>
            </div>
          )}
          {messages.map((message) => (
            <Message
              key={message.id}
              message={message}
              canRegenerate={!streaming && message === lastAssistant}
              onRegenerate={onRegenerate}
              canEdit={!streaming && !message.pending && !String(message.id).startsWith('local-')}
              onEdit={onEdit}
            />
          ))}
          {unanswered && (
            <div className="message-actions unanswered">
              <span className="muted">No reply to this message yet.</span>
              <button type="button" className="small" aria-label="Regenerate reply" onClick={onRegenerate}>
                ↻ Get a reply
              </button>
            </div>
          )}
        </div>
      </div>
      {showJump && (
        <button type="button" className="jump" aria-label="Jump to the latest message" onClick={jumpToLatest}>
          ↓
        </button>
      )}
    </div>
  )
}
