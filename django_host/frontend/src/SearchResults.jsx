import { useEffect, useState } from 'react'
import { api } from './api.js'

const PAGE = 20

// The snippet as text with each highlight in a <mark>: built from offsets, never from HTML.
function Snippet({ text, highlights }) {
  const parts = []
  let last = 0
  highlights.forEach(([start, end], index) => {
    parts.push(text.slice(last, start), <mark key={index}>{text.slice(start, end)}</mark>)
    last = end
  })
  parts.push(text.slice(last))
  return (
    <span className="snippet" dir="auto">
      {parts}
    </span>
  )
}

// The user's messages that match `query`, newest first, page by page; a click opens the conversation.
export default function SearchResults({ query, onSelect }) {
  const [items, setItems] = useState([])
  const [hasMore, setHasMore] = useState(false)
  const [loading, setLoading] = useState(true)
  const [error, setError] = useState('')

  useEffect(() => {
    let current = true
    setLoading(true)
    setError('')
    const timer = setTimeout(() => {
      api.search(query, 0, PAGE).then(
        (page) => {
          if (!current) return
          setItems(page.items)
          setHasMore(page.has_more)
          setLoading(false)
        },
        (e) => {
          if (!current) return
          setItems([])
          setError(e.message)
          setLoading(false)
        },
      )
    }, 250) // typing: one search when the user pauses
    return () => {
      current = false
      clearTimeout(timer)
    }
  }, [query])

  async function more() {
    setLoading(true)
    try {
      const page = await api.search(query, items.length, PAGE)
      setItems((current) => [...current, ...page.items])
      setHasMore(page.has_more)
    } catch (e) {
      setError(e.message)
    } finally {
      setLoading(false)
    }
  }

  return (
    <div className="search-results">
      {error && (
        <p className="error small-text" role="alert">
          {error}
        </p>
      )}
      <ul className="conversation-list" aria-label="Search results" aria-busy={loading}>
        {items.map((hit) => (
          <li key={hit.message.id} className="search-hit">
            <button type="button" onClick={() => onSelect(hit.conversation.id)}>
              <span className="hit-title" dir="auto">
                {hit.conversation.title || 'New conversation'}
              </span>
              <Snippet text={hit.snippet} highlights={hit.highlights} />
            </button>
          </li>
        ))}
        {!loading && !error && items.length === 0 && <li className="muted empty-list">Nothing found.</li>}
      </ul>
      {hasMore && (
        <button type="button" className="link load-more" onClick={more} disabled={loading}>
          More results
        </button>
      )}
    </div>
  )
}
