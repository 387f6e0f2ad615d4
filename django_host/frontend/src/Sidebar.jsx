import { useEffect, useRef, useState } from 'react'
import AccountPanel from './AccountPanel.jsx'
import ApiKeysPanel from './ApiKeysPanel.jsx'
import SearchResults from './SearchResults.jsx'

export const UNTITLED = 'New conversation'

function ConversationItem({ conversation, active, onSelect, onRename, onDelete }) {
  const [mode, setMode] = useState('view') // 'rename' | 'confirm-delete'
  const [title, setTitle] = useState(conversation.title || '')
  const input = useRef(null)
  const closing = useRef(false) // Enter then the input's blur: save once
  const name = conversation.title || UNTITLED

  useEffect(() => {
    if (mode === 'rename') {
      closing.current = false
      input.current?.select()
    }
  }, [mode])

  async function saveRename() {
    if (closing.current) return
    closing.current = true
    const next = title.trim()
    setMode('view')
    if (next && next !== conversation.title) await onRename(conversation.id, next)
    else setTitle(conversation.title || '')
  }

  if (mode === 'rename') {
    return (
      <li className="conversation renaming">
        <input
          ref={input}
          dir="auto"
          aria-label={`New title for ${name}`}
          value={title}
          maxLength={200}
          onChange={(e) => setTitle(e.target.value)}
          onBlur={saveRename}
          onKeyDown={(e) => {
            if (e.key === 'Enter') {
              e.preventDefault()
              saveRename()
            } else if (e.key === 'Escape') {
              closing.current = true
              setTitle(conversation.title || '')
              setMode('view')
            }
          }}
        />
      </li>
    )
  }

  if (mode === 'confirm-delete') {
    return (
      <li className="conversation confirming" role="group" aria-label={`Delete ${name}?`}>
        <span className="confirm-text" dir="auto">
          Delete “{name}”?
        </span>
        <button type="button" className="danger small" aria-label={`Confirm delete ${name}`} onClick={() => onDelete(conversation.id)}>
          Delete
        </button>
        <button type="button" className="small" aria-label="Cancel delete" onClick={() => setMode('view')}>
          Cancel
        </button>
      </li>
    )
  }

  return (
    <li className={`conversation${active ? ' active' : ''}`}>
      <button
        type="button"
        className="conversation-title"
        dir="auto"
        aria-current={active ? 'page' : undefined}
        title={name}
        onClick={() => onSelect(conversation.id)}
      >
        {name}
      </button>
      <span className="conversation-actions">
        <button type="button" className="icon-button small" aria-label={`Rename ${name}`} title="Rename" onClick={() => setMode('rename')}>
          <svg viewBox="0 0 24 24" aria-hidden="true">
            <path d="M4 20h4L19 9l-4-4L4 16z" />
          </svg>
        </button>
        <button type="button" className="icon-button small" aria-label={`Delete ${name}`} title="Delete" onClick={() => setMode('confirm-delete')}>
          <svg viewBox="0 0 24 24" aria-hidden="true">
            <path d="M5 7h14M10 7V4h4v3M7 7l1 13h8l1-13" />
          </svg>
        </button>
      </span>
    </li>
  )
}

export default function Sidebar({
  user,
  conversations,
  activeId,
  hasMore,
  loading,
  open,
  onClose,
  onNew,
  onSelect,
  onRename,
  onDelete,
  onLoadMore,
  onLogout,
  onAccountDeleted,
}) {
  const [keysOpen, setKeysOpen] = useState(false)
  const [accountOpen, setAccountOpen] = useState(false)
  const [query, setQuery] = useState('')
  const searching = query.trim().length > 0
  return (
    <nav id="sidebar" className={`sidebar${open ? ' open' : ''}`} aria-label="Conversations">
      <div className="sidebar-head">
        <span className="brand small">dziri</span>
        <button type="button" className="icon-button only-narrow" aria-label="Hide conversations" onClick={onClose}>
          <svg viewBox="0 0 24 24" aria-hidden="true">
            <path d="M6 6l12 12M18 6L6 18" />
          </svg>
        </button>
      </div>
      <button type="button" className="new-chat" aria-label="New conversation" onClick={onNew}>
        <svg viewBox="0 0 24 24" aria-hidden="true">
          <path d="M12 5v14M5 12h14" />
        </svg>
        New conversation
      </button>
      <div className="search-box" role="search">
        <input
          type="search"
          dir="auto"
          aria-label="Search messages"
          placeholder="Search messages"
          maxLength={200}
          value={query}
          onChange={(e) => setQuery(e.target.value)}
          onKeyDown={(e) => e.key === 'Escape' && setQuery('')}
        />
      </div>
      {searching ? (
        <SearchResults query={query.trim()} onSelect={onSelect} />
      ) : (
        <>
          <ul className="conversation-list">
          {conversations.map((conversation) => (
            <ConversationItem
              key={conversation.id}
              conversation={conversation}
              active={conversation.id === activeId}
              onSelect={onSelect}
              onRename={onRename}
              onDelete={onDelete}
            />
          ))}
          {!loading && conversations.length === 0 && <li className="muted empty-list">No conversations yet.</li>}
        </ul>
        {hasMore && (
          <button type="button" className="link load-more" onClick={onLoadMore} disabled={loading}>
            Show older conversations
          </button>
        )}
        </>
      )}
      <div className="sidebar-foot">
        <span className="who" title={user.email} dir="auto">
          {user.username}
        </span>
        <span className="foot-actions">
          <button type="button" className="small" aria-label="Account" onClick={() => setAccountOpen(true)}>
            Account
          </button>
          <button type="button" className="small" aria-label="API keys" onClick={() => setKeysOpen(true)}>
            API keys
          </button>
          <button type="button" className="small" aria-label="Log out" onClick={onLogout}>
            Log out
          </button>
        </span>
      </div>
      {keysOpen && <ApiKeysPanel onClose={() => setKeysOpen(false)} />}
      {accountOpen && <AccountPanel user={user} onClose={() => setAccountOpen(false)} onDeleted={onAccountDeleted} />}
    </nav>
  )
}
